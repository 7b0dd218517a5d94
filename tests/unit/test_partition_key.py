"""`--partition-key`: outputs keyed by a field of their value, on every app, checked where options are."""

from __future__ import annotations

import orjson
import pytest

from streams.errors import ConfigError
from streams.records import Record
from streams.runtime.contract import parse_options
from streams.runtime.keys import KeyPath
from streams.runtime.loader import load_app


def test_outputs_are_keyed_by_a_top_level_or_nested_field() -> None:
    value = orjson.dumps({"_id": 7, "album": {"album_id": 5001, "title": "T"}, "isrc": "KRA302400001"})
    assert KeyPath("_id").key_of(value) == b"7"
    assert KeyPath("album.album_id").key_of(value) == b"5001"
    assert KeyPath("isrc").key_of(value) == b"KRA302400001"


@pytest.mark.parametrize("value", [b"not json", b"[1, 2]", b'{"album": null}', b'{"album": {"title": "x"}}',
                                   b'{"album": {"album_id": [1]}}'])
def test_a_record_without_the_field_keeps_its_own_key(value: bytes) -> None:
    path = KeyPath("album.album_id")
    [kept] = path.keyed([Record(b"own", value, {"h": b"1"}, topic="t", partition=0, offset=3)])
    assert (kept.key, kept.value, kept.headers) == (b"own", value, {"h": b"1"})
    assert path.unkeyed == 1


def test_keyed_records_keep_value_and_headers() -> None:
    records = [Record(str(i).encode(), orjson.dumps({"_id": i, "album": {"album_id": i // 10}}), {"v": b"1"})
               for i in range(25)]
    keyed = KeyPath("album.album_id").keyed(records)
    assert [r.key for r in keyed] == [str(i // 10).encode() for i in range(25)]
    assert [(r.value, r.headers) for r in keyed] == [(r.value, r.headers) for r in records]


@pytest.mark.parametrize("app", ["normalize", "kafka"])
def test_sources_and_processors_take_the_option_and_check_its_form(app: str) -> None:
    app_class = load_app(app)
    required = {"topic": "t"} if app == "kafka" else {}
    assert parse_options(app_class, {**required, "partition-key": "album.album_id"}).partition_key == "album.album_id"
    with pytest.raises(ConfigError, match="--partition-key"):
        parse_options(app_class, {**required, "partition-key": "album..id"})


@pytest.mark.parametrize("app", ["mongo", "file"])
def test_a_sink_refuses_it_and_says_where_it_belongs(app: str) -> None:
    required = {"dir": "/tmp/x"} if app == "file" else {}
    with pytest.raises(ConfigError, match="a sink writes no records to key; set it on the app that writes"):
        parse_options(load_app(app), {**required, "partition-key": "album.album_id"})
