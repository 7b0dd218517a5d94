"""The `cdc-postgres` source against Debezium embedded, both reading the same WAL of the legacy catalog tables.

A scratch database gets the legacy schema and a base of rows; then each reader's slot and publication are created,
and only then a workload of row changes (inserts, updates, deletes in transactions of a few hundred, server-side
SQL) is written, so both slots hold exactly the same changes before either reader starts. Then, one after the
other: `tuneflow app run cdc-postgres` delivering them to Kafka (timed by the CreateTime of its first and last
record, as the app benchmarks time a topic writer), and Debezium's PostgreSQL connector (pgoutput) delivering them
to a Python handler that counts them (`benchmarks.peers.debezium_pg`, its own process). Both must have seen the
same changes: counts per table and op, and an order-free checksum of (table, op, key). Slots, publications and the
database are dropped even when a run fails.

    eval "$(deploy/local/stack env)" && python -m benchmarks.cdc_postgres
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg2  # type: ignore[import-untyped]
from psycopg2 import sql  # type: ignore[import-untyped]
from sqlalchemy import create_engine

from benchmarks.apps import RSS_LIMIT_MB, _Topics, _written_run
from benchmarks.harness import machine
from streams.catalog.dburl import to_sqlalchemy_url
from streams.catalog.legacy import create_legacy_schema
from streams.cdc import pgslot
from tests.integration.pipeline import read_topic
from tests.integration.processes import AppProcess
from tests.integration.services import scratch_database

CHANGES = int(os.environ.get("TUNEFLOW_BENCH_CDC_CHANGES", "200000"))
TRANSACTION = 300  # changes per transaction: 100 new tracks, 120 track and 30 album updates, 50 track deletes
BASE_TRACKS, BASE_ALBUMS = 100_000, 1_000
TABLES = ("track", "album")
TARGET_TIMES_DEBEZIUM = 1.5
TIMEOUT_S = 900


def workload(url: str, changes: int) -> Counter[tuple[str, str]]:
    """Write `changes` row changes in transactions of TRANSACTION; returns how many of each (table, op)."""
    expected: Counter[tuple[str, str]] = Counter()
    transactions = changes // TRANSACTION
    with contextlib.closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
        for n in range(transactions):
            first_new = BASE_TRACKS + 1 + n * 100
            cursor.execute("INSERT INTO track (track_id, album_id, title, track_no, duration_ms, updated_at) "
                           "SELECT i, 1 + i %% %s, 'Track ' || i, 1 + i %% 20, 180000 + i %% 1000, now() "
                           "FROM generate_series(%s, %s) AS i", (BASE_ALBUMS, first_new, first_new + 99))
            low = 1 + (n * 120) % (BASE_TRACKS - 120)
            cursor.execute("UPDATE track SET duration_ms = duration_ms + 1, updated_at = now() "
                           "WHERE track_id BETWEEN %s AND %s", (low, low + 119))
            low = 1 + (n * 30) % (BASE_ALBUMS - 30)
            cursor.execute("UPDATE album SET label = 'Label ' || %s, updated_at = now() "
                           "WHERE album_id BETWEEN %s AND %s", (n, low, low + 29))
            cursor.execute("DELETE FROM track WHERE track_id BETWEEN %s AND %s", (first_new, first_new + 49))
            connection.commit()
            expected.update({("track", "c"): 100, ("track", "u"): 120, ("album", "u"): 30, ("track", "d"): 50})
    return expected


def base_rows(url: str) -> None:
    engine = create_engine(to_sqlalchemy_url(url))
    create_legacy_schema(engine)
    engine.dispose()
    with contextlib.closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO album (album_id, title, album_type, updated_at) "
                       "SELECT i, 'Album ' || i, 'album', now() FROM generate_series(1, %s) AS i", (BASE_ALBUMS,))
        cursor.execute("INSERT INTO track (track_id, album_id, title, track_no, duration_ms, updated_at) "
                       "SELECT i, 1 + i %% %s, 'Track ' || i, 1 + i %% 20, 180000, now() "
                       "FROM generate_series(1, %s) AS i", (BASE_ALBUMS, BASE_TRACKS))
        connection.commit()


def key_text(key: dict[str, Any]) -> str:
    return ",".join(f"{name}={key[name]}" for name in sorted(key))


class Tally:
    """Counts per (table, op) and an order-free checksum of (table, op, key): the same for the same changes,
    whatever order or reader saw them."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self._sum = 0

    def add(self, table: str, op: str, key: dict[str, Any]) -> None:
        self.counts[(table, op)] += 1
        digest = hashlib.blake2b(f"{table}|{op}|{key_text(key)}".encode(), digest_size=8).digest()
        self._sum = (self._sum + int.from_bytes(digest, "big")) % (1 << 64)

    @property
    def checksum(self) -> str:
        return f"{self._sum:016x}"

    def to_json(self) -> dict[str, Any]:
        return {"changes": sum(self.counts.values()), "checksum": self.checksum,
                "by_table_op": {f"{table}.{op}": n for (table, op), n in sorted(self.counts.items())}}


def create_capture(url: str, names: Iterable[str]) -> None:
    """A slot and a publication (same name) on TABLES for each name."""
    with contextlib.closing(psycopg2.connect(url)) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            tables = pgslot.resolve_tables(cursor, TABLES)
            for name in names:
                pgslot.ensure_publication(cursor, name, tables)
                pgslot.create_slot(cursor, name)


@contextlib.contextmanager
def dropping_every_capture(url: str) -> Iterator[None]:
    """At the end, every slot and publication of the database, whoever created them (a database with a logical slot
    cannot be dropped, and a slot left on the server keeps WAL)."""
    try:
        yield
    finally:
        with contextlib.closing(psycopg2.connect(url)) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT slot_name FROM pg_replication_slots WHERE database = current_database()")
                slots = [name for (name,) in cursor.fetchall()]
                cursor.execute("SELECT pubname FROM pg_publication")
                publications = [name for (name,) in cursor.fetchall()]
                for name in slots:
                    pgslot.drop_capture(cursor, name, None)
                for name in publications:
                    cursor.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(name)))


def source_run(url: str, bootstrap: str, slot: str, records: int, workdir: Path,
               *options: str) -> tuple[dict[str, Any], Tally]:
    """`tuneflow app run cdc-postgres` until it has written `records`; its rate and what it wrote."""
    stream = slot.replace("_", "")
    topic = f"{stream}.cdc"
    topics = _Topics(bootstrap)
    topics.create(topic)
    try:
        process = AppProcess(["cdc-postgres", "--stream", stream, "--label", "cdc", "--",
                              f"--url={url}", f"--tables={','.join(TABLES)}", f"--slot-name={slot}",
                              f"--publication={slot}", *options], workdir, f"{stream}-cdc")
        result = _written_run(process, bootstrap, topic, records, TIMEOUT_S)
        tally = Tally()
        for _, value, _ in read_topic(bootstrap, topic):
            change = orjson.loads(value)
            tally.add(change["table"], change["op"], change["key"])
    finally:
        topics.delete_all(f"{topic}.dlq", f"{topic}.snapshot")
    return result, tally


def snapshot_runs(url: str, bootstrap: str, workdir: Path, run: str) -> dict[str, Any]:
    """`--snapshot=initial` of the tables as the workload left them, with one reader and with two: every row once."""
    with contextlib.closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
        rows = {}
        for table in TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")
            rows[f"{table}.r"] = cursor.fetchone()[0]
    by_readers = {}
    for readers in (1, 2):
        result, seen = source_run(url, bootstrap, f"tfbench_snap{readers}_{run}", sum(rows.values()), workdir,
                                  "--snapshot=initial", f"--snapshot-parallel={readers}")
        by_readers[readers] = result | {"every_row_once": seen.to_json()["by_table_op"] == rows}
        print(f"  {f'initial snapshot, {readers} reader(s)':<48} {result['median']:>12,.0f} rows/s  "
              f"rss {result['peak_rss_mb']} MB", flush=True)
    return {"rows": sum(rows.values()), "unit": "rows/s", "readers_1": by_readers[1], "readers_2": by_readers[2],
            "speedup": round(by_readers[2]["median"] / by_readers[1]["median"], 2)}


def debezium_run(url: str, slot: str, changes: int, workdir: Path) -> tuple[dict[str, Any], Tally]:
    from benchmarks.peers.runner import DebeziumPostgres

    peer = DebeziumPostgres(url, slot, TABLES, changes, workdir)
    outcome = peer.run(TIMEOUT_S)
    tally = Tally()
    for name, count in outcome.pop("by_table_op").items():
        table, op = name.rsplit(".", 1)
        tally.counts[(table, op)] = count
    tally._sum = int(outcome.pop("checksum"), 16)
    return outcome, tally


def run_all(env: dict[str, str], workdir: Path, changes: int = CHANGES) -> dict[str, Any]:
    print("cdc_postgres:", flush=True)
    run = uuid.uuid4().hex[:8]
    ours, theirs = f"tfbench_cdc_{run}", f"tfbench_dbz_{run}"
    bootstrap = env["TUNEFLOW_KAFKA_BOOTSTRAP"]
    with scratch_database(env["TUNEFLOW_PG_URL"], prefix="tf_bench_cdc") as url, dropping_every_capture(url):
        base_rows(url)
        create_capture(url, (ours, theirs))
        expected = workload(url, changes)
        total = sum(expected.values())
        print(f"  workload: {total:,} changes in {total // TRANSACTION} transactions", flush=True)
        tuneflow, tuneflow_seen = source_run(url, bootstrap, ours, total, workdir)
        print(f"  {'cdc-postgres source to Kafka (1 process)':<48} {tuneflow['median']:>12,.0f} changes/s  "
              f"rss {tuneflow['peak_rss_mb']} MB", flush=True)
        debezium, debezium_seen = debezium_run(url, theirs, total, workdir)
        print(f"  {'Debezium embedded to a Python handler':<48} {debezium['median']:>12,.0f} changes/s  "
              f"rss {debezium['peak_rss_mb']} MB", flush=True)
        snapshot = snapshot_runs(url, bootstrap, workdir, run)
    ratio = round(tuneflow["median"] / debezium["median"], 2)
    same = tuneflow_seen.to_json() == debezium_seen.to_json()
    expected_json = {f"{t}.{o}": n for (t, o), n in sorted(expected.items())}
    print(f"  tuneflow at {ratio:.2f}x Debezium; same changes: {same}", flush=True)
    return {
        "workload": {"changes": total, "per_transaction": TRANSACTION, "by_table_op": expected_json},
        "tuneflow": {"name": "cdc-postgres source to Kafka (1 process)", **tuneflow, "unit": "changes/s",
                     "seen": tuneflow_seen.to_json(), "rss_limit_mb": RSS_LIMIT_MB,
                     "rss_within_limit": tuneflow["peak_rss_mb"] <= RSS_LIMIT_MB},
        "debezium": {"name": "Debezium embedded (pgoutput) to a Python handler", **debezium, "unit": "changes/s",
                     "seen": debezium_seen.to_json()},
        "tuneflow_times_debezium": ratio, "target_times": TARGET_TIMES_DEBEZIUM,
        "meets_target": ratio >= TARGET_TIMES_DEBEZIUM,
        "same_changes": same,
        "all_expected": tuneflow_seen.to_json()["by_table_op"] == expected_json,
        "snapshot": snapshot,
    }


def main() -> int:
    if not (os.environ.get("TUNEFLOW_PG_URL") and os.environ.get("TUNEFLOW_KAFKA_BOOTSTRAP")):
        print("missing TUNEFLOW_PG_URL or TUNEFLOW_KAFKA_BOOTSTRAP: `eval \"$(deploy/local/stack env)\"` first",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tf-bench-cdc-") as workdir:
        report = run_all(dict(os.environ), Path(workdir))
    print(orjson.dumps({"machine": machine(), "cdc_postgres": report}, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
