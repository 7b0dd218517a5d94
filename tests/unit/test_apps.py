"""The built-in apps' batch functions on their own: normalize's outcomes, the mongo sink's write decisions."""

from __future__ import annotations

import orjson
import pytest

from processors.normalize import Normalize, NormalizeOptions
from sinks.changes import to_change
from streams.catalog.samples import DEFECTS, samples
from streams.errors import ConfigError
from streams.records import VERSION_HEADER, Record
from streams.runtime.contract import parse_options
from streams.runtime.loader import load_app
from tests.unit.fixtures import track_payload


def _normalize() -> Normalize:
    return Normalize(NormalizeOptions(), context=None)  # type: ignore[arg-type]


def test_normalize_splits_valid_from_invalid_with_every_reason() -> None:
    items = samples(480, invalid_ratio=0.05, seed=1)
    batch = [Record(key=s.key, value=s.value, topic="raw", partition=0, offset=i) for i, s in enumerate(items)]
    outcome = _normalize().process(batch)
    assert len(outcome.outputs) == sum(s.valid for s in items)
    assert len(outcome.failures) == 24
    by_key = {s.key: s for s in items}
    for failure in outcome.failures:
        sample = by_key[failure.record.key]
        assert not sample.valid
        assert sample.expected_field in {r["field"] for r in failure.reasons}, (sample.defect, failure.reasons)
    assert {by_key[f.record.key].defect for f in outcome.failures} == set(DEFECTS)


def test_normalize_output_is_the_canonical_document_keyed_by_track_id() -> None:
    payload = track_payload(title="  Love\u00a0 wins  all ", isrc="kr-a30-24-00001")
    [out] = _normalize().process([Record(key=None, value=orjson.dumps(payload), headers={"h": b"1"})]).outputs
    assert out.key == b"1000123"
    assert out.headers == {"h": b"1"}
    document = orjson.loads(out.value)
    assert (document["title"], document["isrc"]) == ("Love wins all", "KRA302400001")


def test_normalize_passes_deletes_and_rejects_empty_values() -> None:
    outcome = _normalize().process([
        Record(key=b"5", value=b'{"op": "delete", "track_id": 5, "updated_at": "2024-01-01T00:00:00Z"}'),
        Record(key=b"6", value=b""),
        Record(key=b"7", value=b'{"op": "remove", "track_id": 7}'),
    ])
    assert [orjson.loads(o.value)["op"] for o in outcome.outputs] == ["delete"]
    assert [f.kind for f in outcome.failures] == ["empty", "invalid"]


def test_normalize_reads_a_delete_whatever_the_spelling_of_its_keys() -> None:
    escaped = b'{"\\u006fp": "delete", "track_id": 8}'
    outcome = _normalize().process([Record(key=b"8", value=escaped),
                                    Record(key=b"9", value='{"op": "delete", "track_id": 9}')])
    assert [(o.key, orjson.loads(o.value)["op"]) for o in outcome.outputs] == [(b"8", "delete"), (b"9", "delete")]
    assert outcome.failures == []


def test_normalize_reads_a_delete_wherever_its_op_key_stands() -> None:
    late = b'{"track_id": 12, "updated_at": "2024-01-01T00:00:00Z", "op": "delete"}'
    bad = b'{"track_id": 0, "updated_at": "2024-01-01T00:00:00Z", "op": "delete"}'
    # Tracks whose text holds the bytes "op" (escaped quote, op, closing quote), near the start and further in.
    titled = orjson.dumps(track_payload(track_id=13, title='say "op'))
    labelled = orjson.dumps(track_payload(track_id=14, genres=['so "op']))
    assert b'"op"' in titled[:32] and b'"op"' in labelled[32:]
    outcome = _normalize().process([Record(key=b"12", value=late), Record(key=b"0", value=bad),
                                    Record(key=b"13", value=titled), Record(key=b"14", value=labelled)])
    assert [(o.key, orjson.loads(o.value).get("op")) for o in outcome.outputs] == \
        [(b"12", "delete"), (b"13", None), (b"14", None)]
    assert orjson.loads(outcome.outputs[1].value)["title"] == 'say "op'
    assert orjson.loads(outcome.outputs[2].value)["genres"] == ['so "op']
    [failure] = outcome.failures
    assert (failure.record.key, failure.kind) == (b"0", "invalid")
    assert [r["field"] for r in failure.reasons] == ["track_id"]


def test_normalize_output_spells_enums_and_timestamps_canonically() -> None:
    payload = track_payload(updated_at="2024-02-20T18:00:00.250+09:00")
    [out] = _normalize().process([Record(key=None, value=orjson.dumps(payload))]).outputs
    document = orjson.loads(out.value)
    assert document["updated_at"] == "2024-02-20T09:00:00.250000Z"
    assert document["album"]["album_type"] == "EP"
    assert [a["role"] for a in document["artists"]] == ["MAIN", "COMPOSER"]
    assert document["album"]["release_date"] == "2024-02-20"


def test_mongo_sink_versions_from_header_or_updated_at() -> None:
    doc = orjson.dumps(track_payload(updated_at="2024-02-20T09:00:00Z"))
    assert to_change(Record(key=None, value=doc)).version == 1_708_419_600_000_000
    assert to_change(Record(key=None, value=doc, headers={VERSION_HEADER: b"123"})).version == 123
    tombstone = to_change(Record(key=None, value=b'{"op": "delete", "track_id": 9}', headers={VERSION_HEADER: b"5"}))
    assert (tombstone.key, tombstone.document) == (9, None)


@pytest.mark.parametrize(
    ("value", "headers", "message"),
    [
        (b"{not json", {}, "not JSON"),
        (b"[1, 2]", {}, "not a JSON object"),
        (b'{"title": "x", "updated_at": "2024-01-01T00:00:00Z"}', {}, "no key"),
        (b'{"op": "delete", "track_id": 9}', {}, "no version"),
        (b'{"_id": 1, "updated_at": "yesterday"}', {}, "not an ISO-8601"),
        (b'{"_id": 1}', {VERSION_HEADER: b"abc"}, "not an integer"),
    ],
)
def test_mongo_sink_says_why_a_record_cannot_be_written(value: bytes, headers: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_change(Record(key=None, value=value, headers=headers))


def test_options_are_validated_with_field_and_reason() -> None:
    mongo = load_app("mongo", "sink")
    with pytest.raises(ConfigError, match="--colection: unknown option"):
        parse_options(mongo, {"colection": "x"})
    kafka = load_app("kafka", "source")
    with pytest.raises(ConfigError, match="--topic: required"):
        parse_options(kafka, {})
    assert parse_options(mongo, {"collection": "albums"}).collection == "albums"


def test_unknown_app_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown processor app 'normalise'\. Did you mean 'normalize'"):
        load_app("normalise", "processor")


def test_normalize_with_require_isrc_dead_letters_tracks_without_one() -> None:
    options = parse_options(Normalize, {"require-isrc": "true"})
    strict = Normalize(options, context=None)  # type: ignore[arg-type]
    with_isrc, without = track_payload(track_id=1, isrc="US-AB1-24-00001"), track_payload(track_id=2, isrc=None)
    delete = b'{"op": "delete", "track_id": 3, "updated_at": "2024-01-01T00:00:00Z"}'
    outcome = strict.process([Record(key=b"1", value=orjson.dumps(with_isrc)),
                              Record(key=b"2", value=orjson.dumps(without)), Record(key=b"3", value=delete)])
    assert [o.key for o in outcome.outputs] == [b"1", b"3"]
    [failure] = outcome.failures
    assert failure.record.key == b"2" and failure.kind == "invalid"
    assert failure.reasons == [{"field": "isrc", "message": "a track needs an ISRC here (--require-isrc)"}]
    assert [o.key for o in _normalize().process([Record(key=b"2", value=orjson.dumps(without))]).outputs] == [b"2"]
