"""Guarded updates of stored documents on the stack's FerretDB: an index lookup per key, not a collection scan.

The stack gives every collection table a GIN index on `_jsonb->'_id'` as FerretDB creates it; the store sends
one replacement per command with several in flight. Updates must then cost the same at 200,000 stored documents
as at 20,000: an unindexed `_id` filter scans the table and gets about ten times slower over that growth.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Iterator

import pytest
from pymongo import MongoClient
from sqlalchemy import create_engine, text

from streams.catalog.dburl import to_sqlalchemy_url
from streams.stores.base import Change
from streams.stores.mongo import MongoStore

SMALL, LARGE = 20_000, 200_000
BATCH, ROUNDS = 500, 3


def _document(key: int, version: int) -> dict[str, object]:
    return {"title": f"track {key} v{version}", "track_no": key % 12 + 1}


@pytest.fixture
def database(mongo_uri: str) -> Iterator[str]:
    name = f"tf_idx_{uuid.uuid4().hex[:8]}"
    yield name
    with MongoClient(mongo_uri) as client:
        client.drop_database(name)


def _gin_indexes(postgres_url: str, schema: str) -> list[tuple[str, str]]:
    """(table, index definition) of the GIN indexes in FerretDB's PostgreSQL database, in `schema`."""
    ferretdb_url = f"{postgres_url.split('?', 1)[0].rsplit('/', 1)[0]}/ferretdb"
    engine = create_engine(to_sqlalchemy_url(ferretdb_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = :schema "
                                     "AND indexdef LIKE '%USING gin%'"), {"schema": schema})
            return [(row[0], row[1]) for row in rows]
    finally:
        engine.dispose()


def _update_rate(store: MongoStore, keys: range, version: int) -> float:
    """Guarded updates per second of `keys` to `version`, in batches as the sink sends them."""
    started = time.perf_counter()
    for start in range(keys.start, keys.stop, BATCH):
        batch = [Change(key, version, _document(key, version)) for key in range(start, min(start + BATCH, keys.stop))]
        result = store.apply("tracks", batch)
        assert (result.applied, result.stale) == (len(batch), 0)
    return len(keys) / (time.perf_counter() - started)


def _median_rate(store: MongoStore, first_key: int, version: int) -> tuple[float, list[float]]:
    rates = [_update_rate(store, range(first_key + i * BATCH, first_key + (i + 1) * BATCH), version)
             for i in range(ROUNDS)]
    return statistics.median(rates), rates


def test_updates_use_the_id_index_and_stay_flat_as_the_collection_grows(mongo_uri: str, postgres_url: str,
                                                                          database: str) -> None:
    store = MongoStore(mongo_uri, database)
    try:
        for start in range(1, SMALL + 1, 5_000):
            store.apply("tracks", [Change(key, 1, _document(key, 1)) for key in range(start, start + 5_000)])
        indexes = _gin_indexes(postgres_url, database)
        assert len(indexes) == 1, indexes
        table, definition = indexes[0]
        assert table.startswith("tracks_")
        assert "(_jsonb -> '_id'::text)" in definition

        _update_rate(store, range(1, BATCH + 1), 2)  # the first update batch finds out the stream updates
        small, small_runs = _median_rate(store, BATCH + 1, 2)

        with MongoClient(mongo_uri) as client:
            tracks = client[database]["tracks"]
            for start in range(SMALL + 1, LARGE + 1, 10_000):
                tracks.insert_many([{"_id": key, "_version": 1, "_deleted": False, **_document(key, 1)}
                                    for key in range(start, start + 10_000)], ordered=False)
            assert tracks.count_documents({}) == LARGE
        large, large_runs = _median_rate(store, LARGE - ROUNDS * BATCH + 1, 2)
        print(f"guarded updates/s at {SMALL:,} documents: {small_runs}; at {LARGE:,}: {large_runs}")
        assert large >= 0.75 * small, (small_runs, large_runs)

        # Every update landed at its version, and the documents not updated kept theirs.
        updated = store.get_many("tracks", [1, BATCH + 1, LARGE])
        assert {key: doc["_version"] for key, doc in updated.items()} == {1: 2, BATCH + 1: 2, LARGE: 2}
        assert store.get_many("tracks", [SMALL + 1])[SMALL + 1]["_version"] == 1
        stale = store.apply("tracks", [Change(LARGE, 1, _document(LARGE, 1))])
        assert (stale.applied, stale.stale) == (0, 1)
        assert store.get_many("tracks", [LARGE])[LARGE]["title"] == f"track {LARGE} v2"
    finally:
        store.close()
