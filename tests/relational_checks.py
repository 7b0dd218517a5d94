"""What the relational document store must do on every database it supports (SQLite, PostgreSQL, MariaDB)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from streams.catalog.dburl import make_engine
from streams.catalog.legacy import create_legacy_schema
from streams.catalog.models import timestamp_version
from streams.migration.template import load_template
from streams.serde import business_fields
from streams.stores.base import Change
from streams.stores.relational import RelationalStore
from tests.migration_oracle import CATALOG_TEMPLATE

_BASE = datetime(2024, 3, 1, tzinfo=UTC)
_GENRES = ["Ballad", "K-Pop", "Indie", "Rock", "Jazz"]


def stamp(seconds: int) -> str:
    return (_BASE + timedelta(seconds=seconds)).replace(tzinfo=None).isoformat() + "Z"


def track(track_id: int, version: int = 0, **overrides: Any) -> dict[str, Any]:
    """A normalized track whose album and artists are the same in every track naming them (as in the RDBMS)."""
    album_id = track_id // 4 + 1
    main, other = track_id % 7 + 1, track_id % 5 + 20
    document: dict[str, Any] = {
        "_id": track_id, "title": f"Track {track_id} v{version}", "disc_no": 1, "track_no": track_id % 12 + 1,
        "duration_ms": 180_000 + track_id, "isrc": f"KRA30{track_id:07d}", "explicit": track_id % 3 == 0,
        "album": {"album_id": album_id, "title": f"Album {album_id}", "album_type": "EP",
                  "release_date": "2024-02-20", "label": None if album_id % 2 else "EDAM"},
        "artists": [{"artist_id": main, "name": f"Artist {main}", "role": "MAIN"},
                    {"artist_id": other, "name": f"Artist {other}", "role": "COMPOSER"}],
        "genres": sorted(_GENRES[track_id % 5: track_id % 5 + 2]),
        "updated_at": stamp(track_id + version),
    }
    document.update(overrides)
    return document


def upsert(document: dict[str, Any]) -> Change:
    version = timestamp_version(datetime.fromisoformat(document["updated_at"]))
    return Change(key=document["_id"], version=version, document=document)


def delete(key: int, at: str) -> Change:
    return Change(key=key, version=timestamp_version(datetime.fromisoformat(at)), document=None)


@contextmanager
def catalog_store(url: str, writers: int | None = None) -> Iterator[RelationalStore]:
    """A relational store on the empty legacy schema at `url`."""
    engine = make_engine(url)
    create_legacy_schema(engine)
    engine.dispose()
    store = RelationalStore(url, load_template(CATALOG_TEMPLATE), writers=writers)
    store.open(["tracks"])
    try:
        yield store
    finally:
        store.close()


def stored(store: RelationalStore, keys: list[int]) -> dict[Any, dict[str, Any]]:
    return {key: business_fields(document) for key, document in store.get_many("tracks", keys).items()}


def check_round_trip(store: RelationalStore) -> None:
    documents = [track(i) for i in range(1, 41)]
    result = store.apply("tracks", [upsert(d) for d in documents])
    assert (result.applied, result.stale, result.rejected) == (40, 0, {})
    assert stored(store, list(range(1, 41))) == {d["_id"]: d for d in documents}
    assert store.count("tracks") == 40


def check_version_guard(store: RelationalStore) -> None:
    first = track(100)
    store.apply("tracks", [upsert(first)])
    newer = track(100, version=10, title="Newer", artists=[{"artist_id": 3, "name": "Artist 3", "role": "MAIN"}],
                  genres=["Jazz"])
    older = track(100, version=5, title="Older")
    assert store.apply("tracks", [upsert(newer)]).applied == 1
    result = store.apply("tracks", [upsert(older), upsert(newer)])  # a replay and a late older change
    assert (result.applied, result.stale) == (0, 2)
    assert stored(store, [100]) == {100: newer}  # child rows replaced: one artist, one genre


def check_delete_then_late_older_upsert(store: RelationalStore) -> None:
    store.apply("tracks", [upsert(track(200))])
    assert store.apply("tracks", [delete(200, stamp(200 + 20))]).applied == 1
    assert stored(store, [200]) == {}
    late = store.apply("tracks", [upsert(track(200, version=10))])  # older than the delete
    assert (late.applied, late.stale) == (0, 1)
    assert stored(store, [200]) == {}
    again = track(200, version=30)
    assert store.apply("tracks", [upsert(again)]).applied == 1  # newer than the delete: the track is back
    assert stored(store, [200]) == {200: again}
    # A delete older than the stored row leaves it.
    assert store.apply("tracks", [delete(200, stamp(200 + 25))]).stale == 1
    assert stored(store, [200]) == {200: again}


def check_misfit_value_rejected_alone(store: RelationalStore) -> None:
    long_title = track(301, title="x" * 501)
    wide = track(302, track_no=40_000)
    good = [track(300), track(303)]
    result = store.apply("tracks", [upsert(good[0]), upsert(long_title), upsert(wide), upsert(good[1])])
    assert result.applied == 2
    assert set(result.rejected) == {301, 302}
    assert result.rejected[301] == [{"field": "title",
                                     "message": "501 characters do not fit VARCHAR(500) (track.title)"}]
    assert result.rejected[302][0]["field"] == "track_no"
    assert "40000 does not fit" in result.rejected[302][0]["message"]
    assert stored(store, [300, 301, 302, 303]) == {d["_id"]: d for d in good}


def check_unknown_genre_created(store: RelationalStore) -> None:
    document = track(400, genres=["Lo-fi", "Rock"])
    assert store.apply("tracks", [upsert(document)]).applied == 1
    assert stored(store, [400]) == {400: document}
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM genre WHERE name = 'Lo-fi'")).scalar_one() == 1


def check_unchanged_reference_keeps_its_version(store: RelationalStore) -> None:
    """A track naming its album as the album row already is leaves the row, and its updated_at, alone; a track
    carrying a changed album title updates the row and stamps it with the track's version."""
    def album_row() -> tuple[str, str]:
        with store.engine.connect() as conn:
            title, updated = conn.execute(text("SELECT title, updated_at FROM album WHERE album_id = 126")).one()
            return str(title), str(updated)

    store.apply("tracks", [upsert(track(500))])
    first = album_row()
    store.apply("tracks", [upsert(track(500, version=50, title="Only the track changed"))])
    assert album_row() == first
    store.apply("tracks", [upsert(track(501, version=60, album={**track(501)["album"], "title": "Renamed"}))])
    title, updated = album_row()
    assert title == "Renamed" and updated != first[1]


def run_all(url: str, writers: int | None = None) -> None:
    for check in (check_round_trip, check_version_guard, check_delete_then_late_older_upsert,
                  check_misfit_value_rejected_alone, check_unknown_genre_created,
                  check_unchanged_reference_keeps_its_version):
        with catalog_store(url, writers) as store:
            check(store)
            _reset(store)


def _reset(store: RelationalStore) -> None:
    with store.engine.begin() as conn:
        for table in ("track_genre", "track_artist", "track", "album_artist", "album", "artist", "genre",
                      "tuneflow_tombstone"):
            conn.execute(text(f"DELETE FROM {table}"))


def copy_of(document: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(document)
