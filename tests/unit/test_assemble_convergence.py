"""`assemble` converges for every interleaving: random transactions on a small legacy catalog (SQLite) produce the
change records a CDC source would (full row images, key changes as a delete and an insert), spread over partitions by
table + key; the records are processed in random batches from random partitions, with redeliveries, while the
database keeps moving (each read happens at some state at or after the commit of what it reads for), and the
documents come out through a version-guarded store in a random order. The store ends with exactly the documents the
template reads from the final tables."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from processors.assemble import Assemble, AssembleOptions
from sinks.mongo import MongoOptions, MongoSink
from streams.catalog.dburl import make_engine
from streams.catalog.legacy import create_legacy_schema
from streams.migration.source import bind_template
from streams.migration.template import catalog_template_path, load_template
from streams.migration.template_reader import KeyRange
from streams.records import VERSION_HEADER, Record
from streams.runtime.contract import AppContext
from streams.serde import business_fields, dumps

PK = {"artist": ("artist_id",), "album": ("album_id",), "album_artist": ("album_id", "artist_id"),
      "track": ("track_id",), "track_artist": ("track_id", "artist_id", "role"), "genre": ("genre_id",),
      "track_genre": ("track_id", "genre_id")}
PARTITIONS = 3
NOW = "2024-02-20 09:00:00"
ROLES = ("MAIN", "FEATURED", "COMPOSER")
NAMES = ("Ann", "Bo", "Cy", "Di", "Ed")

Step = tuple[str, str, dict[str, Any], dict[str, Any]]  # table, insert|update|delete, key, values


def seed() -> list[list[Step]]:
    """The first transactions: two artists, albums, genres; three tracks with credits and genres."""
    return [
        [("artist", "insert", {"artist_id": a}, {"name": f"Artist {a}", "updated_at": NOW}) for a in (1, 2)]
        + [("genre", "insert", {"genre_id": g}, {"name": f"Genre {g}"}) for g in (1, 2)]
        + [("album", "insert", {"album_id": b}, {"title": f"Album {b}", "album_type": "ALBUM", "updated_at": NOW})
           for b in (1, 2)],
        [("album_artist", "insert", {"album_id": 1, "artist_id": 1}, {"ord": 1})],
        *[[("track", "insert", {"track_id": t}, {"album_id": 1 + t % 2, "title": f"Track {t}", "track_no": t,
                                                 "updated_at": NOW}),
           ("track_artist", "insert", {"track_id": t, "artist_id": 1 + t % 2, "role": "MAIN"}, {"ord": 1}),
           ("track_genre", "insert", {"track_id": t, "genre_id": 1}, {})] for t in (1, 2, 3)],
    ]


ids = st.integers(1, 4)
name = st.sampled_from(NAMES)
steps: st.SearchStrategy[list[Step]] = st.one_of(
    st.builds(lambda t, b, n: [("track", "insert", {"track_id": t}, {"album_id": b, "title": n, "track_no": 1,
                                                                       "updated_at": NOW})], ids, ids, name),
    st.builds(lambda t, n: [("track", "update", {"track_id": t}, {"title": n})], ids, name),
    st.builds(lambda t, b: [("track", "update", {"track_id": t}, {"album_id": b})], ids, ids),  # moves albums
    st.builds(lambda t: [("track_artist", "delete", {"track_id": t}, {}),
                         ("track_genre", "delete", {"track_id": t}, {}),
                         ("track", "delete", {"track_id": t}, {})], ids),
    st.builds(lambda b, n: [("album", "update", {"album_id": b}, {"title": n})], ids, name),
    st.builds(lambda b, n: [("album", "insert", {"album_id": b}, {"title": n, "album_type": "EP",
                                                                   "updated_at": NOW})], ids, name),
    st.builds(lambda b: [("album_artist", "delete", {"album_id": b}, {}), ("album", "delete", {"album_id": b}, {})],
              ids),
    st.builds(lambda a, n: [("artist", "update", {"artist_id": a}, {"name": n})], ids, name),
    st.builds(lambda a, n: [("artist", "insert", {"artist_id": a}, {"name": n, "updated_at": NOW})], ids, name),
    st.builds(lambda t, a, r: [("track_artist", "insert", {"track_id": t, "artist_id": a, "role": r}, {"ord": 1})],
              ids, ids, st.sampled_from(ROLES)),
    st.builds(lambda t, a: [("track_artist", "delete", {"track_id": t, "artist_id": a}, {})], ids, ids),
    st.builds(lambda t, a, r: [("track_artist", "update", {"track_id": t, "artist_id": a}, {"role": r})],  # key change
              ids, ids, st.sampled_from(ROLES)),
    st.builds(lambda t, g: [("track_genre", "insert", {"track_id": t, "genre_id": g}, {})], ids, st.integers(1, 2)),
    st.builds(lambda t, g: [("track_genre", "update", {"track_id": t}, {"genre_id": g})], ids, st.integers(1, 2)),
    st.builds(lambda g, n: [("genre", "update", {"genre_id": g}, {"name": n})], st.integers(1, 2), name),
    st.builds(lambda b, a: [("album_artist", "insert", {"album_id": b, "artist_id": a}, {"ord": 2})], ids, ids),
)


class Database:
    """The source: applies transactions and emits the change records a CDC source would, at commit."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.version = 1_000

    def commit(self, transaction: list[Step]) -> list[Record]:
        self.version += 100
        changes: list[dict[str, Any]] = []
        with self.engine.begin() as conn:
            for table, op, key, values in transaction:
                for before in self._rows(conn, table, key):
                    if op == "insert":
                        break
                    changes.extend(self._change(conn, table, op, before, values))
                else:
                    if op == "insert":
                        changes.extend(self._change(conn, table, op, None, {**key, **values}))
        return [self._record(change) for change in changes]

    def _rows(self, conn: Connection, table: str, key: dict[str, Any]) -> list[dict[str, Any]]:
        where = " AND ".join(f"{column} = :{column}" for column in key)
        return [dict(row._mapping) for row in conn.execute(text(f"SELECT * FROM {table} WHERE {where}"), key)]

    def _change(self, conn: Connection, table: str, op: str, before: dict[str, Any] | None,
                values: dict[str, Any]) -> list[dict[str, Any]]:
        columns = PK[table]
        old_key = {c: before[c] for c in columns} if before is not None else None
        where = " AND ".join(f"{c} = :k_{c}" for c in columns)
        bound = {f"k_{c}": v for c, v in (old_key or {}).items()}
        try:
            with conn.begin_nested():
                if op == "insert":
                    names = ", ".join(values)
                    conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + n for n in values)})"),
                                 values)
                elif op == "update":
                    sets = ", ".join(f"{c} = :{c}" for c in values)
                    conn.execute(text(f"UPDATE {table} SET {sets} WHERE {where}"), {**values, **bound})
                else:
                    conn.execute(text(f"DELETE FROM {table} WHERE {where}"), bound)
        except IntegrityError:  # a foreign key or unique key the step would break: the database refuses it
            return []
        if op == "delete":
            return [{"op": "d", "table": table, "key": old_key, "before": before, "after": None}]
        new_key = {c: (values if op == "insert" else {**(before or {}), **values})[c] for c in columns}
        after = self._rows(conn, table, new_key)[0]
        if op == "insert":
            return [{"op": "c", "table": table, "key": new_key, "before": None, "after": after}]
        if new_key != old_key:  # a key change is a delete of the old key and an insert of the new one
            return [{"op": "d", "table": table, "key": old_key, "before": before, "after": None},
                    {"op": "c", "table": table, "key": new_key, "before": None, "after": after}]
        return [{"op": "u", "table": table, "key": new_key, "before": before, "after": after}]

    def _record(self, change: dict[str, Any]) -> Record:
        change["source"] = {"txid": None}
        return Record(dumps({"table": change["table"], "key": change["key"]}), dumps(change),
                      {VERSION_HEADER: str(self.version).encode()})


def partition_of(record: Record) -> int:
    return sum(record.key or b"") % PARTITIONS


def context() -> AppContext:
    return AppContext(stream="t", label="a", instance=0, binder=None, metrics=None)  # type: ignore[arg-type]


def final_documents(engine: Engine) -> dict[str, dict[Any, dict[str, Any]]]:
    with engine.connect() as conn:
        bound = bind_template(load_template(catalog_template_path()), conn)
        return {name: {item.key: item.document for item in reader.read(conn, KeyRange())}
                for name, reader in bound.readers.items()}


def run(transactions: list[list[Step]], rng: random.Random, workdir: Path, commit_rate: float = 0.35) -> None:
    """`commit_rate`: how often the database moves on between steps of the stream (low: the stream keeps up)."""
    url = f"sqlite:///{workdir / 'legacy.db'}"
    engine = make_engine(url)
    create_legacy_schema(engine)
    database = Database(engine)
    assemble = Assemble(AssembleOptions(source=url, keys_per_read=2), context())
    assemble.setup()
    sink = MongoSink(MongoOptions(uri=f"embedded://{workdir / 'store'}"), context())
    sink.setup()
    logs: list[list[Record]] = [[] for _ in range(PARTITIONS)]
    offsets = [0] * PARTITIONS
    in_flight: list[Record] = []  # documents on their way to the sink, delivered in any order
    pending = list(transactions)
    try:
        while pending or any(offsets[p] < len(logs[p]) for p in range(PARTITIONS)) or in_flight:
            action = rng.random()
            if pending and action < commit_rate:
                for record in database.commit(pending.pop(0)):
                    logs[partition_of(record)].append(record)
            elif action < 0.75:
                p = rng.randrange(PARTITIONS)
                if rng.random() < 0.15:  # a restart re-reads what was not committed: redeliveries
                    offsets[p] = max(0, offsets[p] - rng.randint(1, 4))
                batch = logs[p][offsets[p]:offsets[p] + rng.randint(1, 4)]
                offsets[p] += len(batch)
                if batch:
                    outcome = assemble.process(batch)
                    assert not outcome.failures, [f.reasons for f in outcome.failures]
                    in_flight.extend(outcome.outputs)
            elif in_flight:
                rng.shuffle(in_flight)
                count = rng.randint(1, len(in_flight))
                sink.write(in_flight[:count])
                if rng.random() < 0.1:  # the sink crashed before committing: the same records come again
                    continue
                del in_flight[:count]
        expected = final_documents(engine)
        assert sink.store is not None
        for collection, documents in expected.items():
            stored = {doc["_id"]: business_fields(doc) for batch in sink.store.scan(collection) for doc in batch}
            assert stored == documents, collection
    finally:
        assemble.close()
        sink.close()
        engine.dispose()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transactions=st.lists(steps, min_size=1, max_size=25), seed_=st.integers(0, 2**32),
       commit_rate=st.sampled_from([0.03, 0.1, 0.35, 0.7]))
def test_assemble_converges_for_every_interleaving(transactions: list[list[Step]], seed_: int,
                                                   commit_rate: float) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        run(seed() + transactions, random.Random(seed_), Path(workdir), commit_rate)


def test_a_track_moving_albums_rebuilds_both_albums(tmp_path: Path) -> None:
    moves = [[("track", "update", {"track_id": 1}, {"album_id": 1})], [("track", "update", {"track_id": 3},
                                                                          {"album_id": 1})]]
    for seed_ in range(5):
        (tmp_path / str(seed_)).mkdir()
        run(seed() + moves, random.Random(seed_), tmp_path / str(seed_), commit_rate=0.03)


@pytest.mark.parametrize("wrong", [b"not json", b'{"op": "u"}'])
def test_a_record_that_is_not_a_row_change_fails_with_the_reason(tmp_path: Path, wrong: bytes) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    engine = make_engine(url)
    create_legacy_schema(engine)
    engine.dispose()
    assemble = Assemble(AssembleOptions(source=url), context())
    assemble.setup()
    try:
        outcome = assemble.process([Record(b"k", wrong, {VERSION_HEADER: b"5"})])
    finally:
        assemble.close()
    assert not outcome.outputs
    assert outcome.failures[0].reasons[0]["message"].startswith(("value is not JSON", "not a row change"))
