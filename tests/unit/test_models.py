from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.catalog.models import ChangeEvent, TrackDelete, TrackDocument, timestamp_version
from streams.serde import canonical_json, content_checksum, to_plain
from tests.unit.fixtures import track_payload


def reasons(exc: ValidationError) -> set[tuple[str, str]]:
    return {(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()}


def test_catalog_example_round_trips_to_the_target_document() -> None:
    doc = TrackDocument.model_validate(track_payload())
    assert to_plain(doc) == track_payload()


def test_text_is_nfc_trimmed_and_collapsed() -> None:
    decomposed = "Cafe\u0301  del \t Mar "
    doc = TrackDocument.model_validate(track_payload(title=decomposed))
    assert doc.title == "Caf\u00e9 del Mar"


def test_isrc_is_upper_cased_and_unhyphenated() -> None:
    doc = TrackDocument.model_validate(track_payload(isrc="kr-a30-24-00001"))
    assert doc.isrc == "KRA302400001"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"title": "   "}, "title"),
        ({"isrc": "KR123"}, "isrc"),
        ({"duration_ms": 0}, "duration_ms"),
        ({"duration_ms": 86_400_001}, "duration_ms"),
        ({"track_no": 0}, "track_no"),
        ({"disc_no": 0}, "disc_no"),
        ({"album": {"album_id": 1, "title": "x", "album_type": "LP"}}, "album.album_type"),
        ({"album": {"album_id": 1, "title": "x", "album_type": "EP", "release_date": "2024-02-30"}},
         "album.release_date"),
        ({"artists": [{"artist_id": 1, "name": "A", "role": "COMPOSER"}]}, "artists"),
        ({"artists": [{"artist_id": 1, "name": "A", "role": "DJ"}]}, "artists.0.role"),
        ({"artists": []}, "artists"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_invalid_tracks_name_the_field(override: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TrackDocument.model_validate(track_payload(**override))
    assert field in {loc for loc, _ in reasons(caught.value)}


def test_every_reason_is_reported_not_only_the_first() -> None:
    with pytest.raises(ValidationError) as caught:
        TrackDocument.model_validate(track_payload(title="", isrc="bad", duration_ms=-5))
    assert {loc for loc, _ in reasons(caught.value)} == {"title", "isrc", "duration_ms"}


def test_artists_are_ordered_by_role_then_given_order_and_genres_sorted_unique() -> None:
    artists = [
        {"artist_id": 3, "name": "C", "role": "COMPOSER"},
        {"artist_id": 2, "name": "B", "role": "FEATURED"},
        {"artist_id": 1, "name": "A", "role": "MAIN"},
        {"artist_id": 4, "name": "D", "role": "MAIN"},
    ]
    doc = TrackDocument.model_validate(track_payload(artists=artists, genres=["K-Pop", "Ballad", "K-Pop"]))
    assert [a.artist_id for a in doc.artists] == [1, 4, 2, 3]
    assert doc.genres == ["Ballad", "K-Pop"]


def test_timestamps_are_utc_with_z() -> None:
    doc = TrackDocument.model_validate(track_payload(updated_at="2024-02-20T18:00:00.250+09:00"))
    assert to_plain(doc)["updated_at"] == "2024-02-20T09:00:00.250000Z"
    assert to_plain(TrackDocument.model_validate(track_payload()))["updated_at"] == "2024-02-20T09:00:00Z"
    assert timestamp_version(doc.updated_at) == 1_708_419_600_250_000


def test_canonical_json_ignores_key_order_and_checksum_ignores_bookkeeping() -> None:
    a = {"_id": 1, "b": 2, "a": 1}
    b = {"a": 1, "_id": 1, "b": 2, "_version": 9}
    assert canonical_json(a) == b'{"_id":1,"a":1,"b":2}'
    assert content_checksum([a]) == content_checksum([b])
    assert content_checksum([a]) != content_checksum([{"_id": 1, "a": 2, "b": 2}])


def test_delete_and_change_event_shapes() -> None:
    assert TrackDelete.model_validate({"op": "delete", "track_id": 5}).track_id == 5
    with pytest.raises(ValidationError):
        ChangeEvent.model_validate({"source": "pg", "table": "track", "op": "u", "key": {"track_id": 1},
                                    "version": 10})
    event = ChangeEvent.model_validate({"source": "pg", "table": "track", "op": "d", "key": {"track_id": 1},
                                        "before": {"track_id": 1}, "version": 10})
    assert event.after is None
