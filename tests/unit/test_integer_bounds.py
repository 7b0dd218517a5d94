"""Integers that fit their column: ids in BIGINT, track and disc numbers in SMALLINT, or a reason in the DLQ.

Payloads are written with the standard json module: it writes integers of any size, as a caller might.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from processors.normalize import Normalize, NormalizeOptions
from sinks.changes import to_change
from streams.catalog.models import BIGINT_MAX, SMALLINT_MAX
from streams.records import VERSION_HEADER, Record
from tests.unit.fixtures import track_payload

ALBUM = {"album_id": 5001, "title": "The Winning", "album_type": "EP"}
MAIN = {"artist_id": 77, "name": "IU", "role": "MAIN"}


def _normalize(payload: dict[str, Any]) -> tuple[list[Record], list[dict[str, str]]]:
    app = Normalize(NormalizeOptions(), context=None)  # type: ignore[arg-type]  # process() never reads it
    outcome = app.process([Record(b"k", json.dumps(payload).encode())])
    return outcome.outputs, [reason for failure in outcome.failures for reason in failure.reasons]


def _with(field: str, value: Any) -> dict[str, Any]:
    if field == "album.album_id":
        return track_payload(album={**ALBUM, "album_id": value})
    if field == "artists.0.artist_id":
        return track_payload(artists=[{**MAIN, "artist_id": value}])
    return track_payload(**{field: value})


ID_FIELDS = ["_id", "album.album_id", "artists.0.artist_id"]
SMALLINT_FIELDS = ["track_no", "disc_no"]


@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize("value", [1, BIGINT_MAX])
def test_ids_at_the_bigint_bounds_pass(field: str, value: int) -> None:
    outputs, reasons = _normalize(_with(field, value))
    assert reasons == []
    stored = json.loads(outputs[0].value)
    if field == "_id":
        assert outputs[0].key == str(value).encode()
    assert str(value) in outputs[0].value.decode()
    assert stored["_id"] == (value if field == "_id" else 1000123)


@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "greater than or equal to 1"),
        (-5, "greater than or equal to 1"),
        (BIGINT_MAX + 1, "less than or equal to 9223372036854775807"),
        (2**64, "less than or equal to 9223372036854775807"),
        (2**70, "less than or equal to 9223372036854775807"),
        (12.0, "valid integer"),
        (12.5, "valid integer"),
        ("12", "valid integer"),
        (True, "valid integer"),
    ],
)
def test_ids_outside_bigint_or_not_integers_go_to_the_dlq(field: str, value: Any, message: str) -> None:
    outputs, reasons = _normalize(_with(field, value))
    assert outputs == []
    assert any(reason["field"] == field and message in reason["message"]
               for reason in reasons), reasons


@pytest.mark.parametrize("value", [0, BIGINT_MAX + 1, 2**70, 7.0, "7"])
def test_a_delete_with_an_id_outside_bigint_goes_to_the_dlq(value: Any) -> None:
    outputs, reasons = _normalize({"op": "delete", "track_id": value})
    assert outputs == []
    assert "track_id" in {reason["field"] for reason in reasons}, reasons


def test_a_delete_at_the_bigint_bound_passes() -> None:
    outputs, reasons = _normalize({"op": "delete", "track_id": BIGINT_MAX})
    assert (reasons, outputs[0].key) == ([], str(BIGINT_MAX).encode())


@pytest.mark.parametrize("field", SMALLINT_FIELDS)
def test_track_and_disc_numbers_stay_within_smallint(field: str) -> None:
    assert _normalize(_with(field, SMALLINT_MAX))[1] == []
    outputs, reasons = _normalize(_with(field, SMALLINT_MAX + 1))
    assert outputs == []
    assert reasons == [{"field": field, "message": "Input should be less than or equal to 32767"}]
    assert _normalize(_with(field, 3.0))[1][0]["field"] == field


def test_duration_is_an_integer_number_of_milliseconds() -> None:
    assert _normalize(_with("duration_ms", 86_400_000))[1] == []
    assert _normalize(_with("duration_ms", 86_400_001))[1][0]["field"] == "duration_ms"
    assert _normalize(_with("duration_ms", 1000.5))[1][0]["field"] == "duration_ms"


@pytest.mark.parametrize(
    ("raw", "headers", "message"),
    [
        (b'{"_id": 1180591620717411303424, "updated_at": "2024-01-01T00:00:00Z"}', {}, "is a float"),
        (b'{"_id": 18446744073709551615, "updated_at": "2024-01-01T00:00:00Z"}', {}, "does not fit a 64-bit"),
        (b'{"_id": 9223372036854775808, "updated_at": "2024-01-01T00:00:00Z"}', {}, "does not fit a 64-bit"),
        (b'{"_id": 1.5, "updated_at": "2024-01-01T00:00:00Z"}', {}, "is a float"),
        (b'{"_id": true, "updated_at": "2024-01-01T00:00:00Z"}', {}, "is a bool"),
        (b'{"_id": "", "updated_at": "2024-01-01T00:00:00Z"}', {}, "empty string"),
        (b'{"op": "delete", "track_id": 1e30}', {VERSION_HEADER: b"5"}, "is a float"),
        (b'{"_id": 1}', {VERSION_HEADER: b"9223372036854775808"}, "outside 0"),
        (b'{"_id": 1}', {VERSION_HEADER: b"-1"}, "outside 0"),
    ],
)
def test_the_sink_never_stores_a_key_or_version_it_cannot_hold_exactly(raw: bytes, headers: dict[str, bytes],
                                                                       message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_change(Record(key=None, value=raw, headers=headers))


def test_the_sink_takes_keys_at_the_int64_bounds() -> None:
    top = to_change(Record(key=None, value=b'{"_id": 9223372036854775807, "updated_at": "2024-01-01T00:00:00Z"}'))
    bottom = to_change(Record(key=None, value=b'{"_id": -9223372036854775808}', headers={VERSION_HEADER: b"1"}))
    assert (top.key, bottom.key) == (BIGINT_MAX, -(2**63))
