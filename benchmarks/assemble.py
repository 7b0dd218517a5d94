"""Catch-up end to end: PostgreSQL → `cdc-postgres` → `assemble` → `mongo` (FerretDB), on a backlog of row changes.

A scratch catalog is written, the source's slot is created (the source runs), the catalog is backfilled into the
target at the snapshot's LSN (as `migrate start` does), and a writer commits transactions of one to three changes
across tracks, albums, artists, credits and genres. Once the change topic holds them all, `assemble` and `mongo`
start and the clock runs until every document of the target equals the template's read of the final tables:
changes/s = row changes in the topic / those seconds.

Then the live-migration acceptance at full size (`live`), from PostgreSQL and from MariaDB: 200,000 generated
tracks (TUNEFLOW_BENCH_LIVE_TRACKS) change under a writer while `migrate start` and the catch-up stream run; once
it drained, `verify` must be clean and every document must equal the final tables' (tests/live_migration.py). Each
engine's outcome (`agrees`), its steps' seconds and any differences go into the report; a failed check is
recorded, and the section says so in `live_failed`.

    eval "$(deploy/local/stack env)" && python -m benchmarks.assemble
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg2  # type: ignore[import-untyped]
from pymongo import MongoClient
from sqlalchemy import create_engine

from benchmarks.harness import machine
from streams.catalog.dburl import to_sqlalchemy_url
from streams.catalog.generator import generate_catalog
from streams.catalog.legacy import create_legacy_schema
from streams.migration.backfill import write_range
from streams.migration.snapshot import open_snapshot
from streams.migration.source import bind_template
from streams.migration.template import catalog_template_path, load_template
from streams.migration.template_reader import KeyRange
from streams.stores.factory import open_store
from tests.integration.pipeline import create_topic, read_topic
from tests.integration.processes import AppProcess
from tests.integration.services import drop_captures, scratch_database, unique_name
from tests.integration.test_assemble import Writer, stored_documents, template_documents
from tests.live_migration import run_live_migration

TRACKS = 2000
TRANSACTIONS = 1500
LIVE_TRACKS = 200_000
LIVE_WRITES_PER_S = 5.0


def backfill(url: str, mongo_uri: str, database: str) -> None:
    engine = create_engine(to_sqlalchemy_url(url))
    snapshot = open_snapshot(engine)
    store = open_store(mongo_uri, database)
    try:
        with snapshot.reader() as (conn, version):
            bound = bind_template(load_template(catalog_template_path()), conn)
            for name, reader in bound.readers.items():
                write_range(conn, reader, KeyRange(), store, name, version, contextlib.nullcontext())
    finally:
        snapshot.close()
        store.close()
        engine.dispose()


def settled_count(bootstrap: str, topic: str, quiet_s: float = 3.0, timeout_s: float = 300) -> int:
    """The number of records in `topic` once it stopped growing for `quiet_s`."""
    deadline, last, since = time.monotonic() + timeout_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        count = len(read_topic(bootstrap, topic))
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return count
        time.sleep(0.5)
    raise RuntimeError(f"{topic} kept growing for {timeout_s}s")


def run_all(env: dict[str, str], workdir: Path, tracks: int = TRACKS,
            transactions: int = TRANSACTIONS) -> dict[str, Any]:
    bootstrap, mongo_uri = env["TUNEFLOW_KAFKA_BOOTSTRAP"], env["TUNEFLOW_MONGO_URI"]
    stream, target = unique_name("tfbasm"), unique_name("tf_basm")
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    with scratch_database(env["TUNEFLOW_PG_URL"], prefix="tf_basm") as url:
        engine = create_engine(to_sqlalchemy_url(url))
        create_legacy_schema(engine)
        engine.dispose()
        generate_catalog(url, tracks, mode="append", seed=3)
        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute("ALTER TABLE track REPLICA IDENTITY FULL")
        for topic in (f"{stream}.cdc", f"{stream}.assemble"):
            create_topic(bootstrap, topic, 3)
        cdc = AppProcess(["cdc-postgres", "--stream", stream, "--label", "cdc", "--", f"--url={url}",
                          "--heartbeat-s=1"], workdir, "cdc")
        assemble = AppProcess(["assemble", "--stream", stream, "--label", "assemble", "--input", f"{stream}.cdc",
                               "--", f"--source={url}"], workdir, "assemble")
        sink = AppProcess(["mongo", "--stream", stream, "--label", "mongo", "--input", f"{stream}.assemble", "--",
                           f"--uri={mongo_uri}", f"--database={target}"], workdir, "mongo")
        try:
            cdc.start().wait_ready()
            backfill(url, mongo_uri, target)
            writer = Writer(url, transactions, seed=4)
            writer.pause_s = 0.0
            writer.run()
            if writer.error is not None:
                raise writer.error
            changes = settled_count(bootstrap, f"{stream}.cdc")
            expected = template_documents(url)
            started = time.perf_counter()
            assemble.start()
            sink.start()
            while stored_documents(client, target) != expected:
                if time.perf_counter() - started > 900:
                    raise RuntimeError(f"not caught up after 900 s\n{assemble.log_tail()}\n{sink.log_tail()}")
                time.sleep(2)  # reading every document loads FerretDB: not too often
            seconds = time.perf_counter() - started
            documents = len(read_topic(bootstrap, f"{stream}.assemble"))
        finally:
            for process in (sink, assemble, cdc):
                process.stop()
            client.drop_database(target)
            client.close()
            drop_captures(url)
    return {"tracks": tracks, "transactions": transactions, "row_changes": changes, "document_changes": documents,
            "seconds": round(seconds, 2), "changes_per_s": round(changes / seconds, 1),
            "documents_per_s": round(documents / seconds, 1),
            "note": "includes the apps' start-up (1-2 s) and up to 2 s of polling; FerretDB's guarded "
                    "replaces bound the sink"}


def live_migrations(env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """The live-migration acceptance from each RDBMS at full size, its outcome asserted and recorded."""
    tracks = int(env.get("TUNEFLOW_BENCH_LIVE_TRACKS", LIVE_TRACKS))
    results: dict[str, Any] = {}
    for engine, server in (("postgresql", "TUNEFLOW_PG_URL"), ("mariadb", "TUNEFLOW_MYSQL_URL")):
        here = workdir / f"live-{engine}"
        here.mkdir(parents=True, exist_ok=True)
        try:
            results[engine] = run_live_migration(env[server], tracks=tracks, writes_per_s=LIVE_WRITES_PER_S,
                                                 workdir=here, mongo_uri=env["TUNEFLOW_MONGO_URI"],
                                                 bootstrap=env["TUNEFLOW_KAFKA_BOOTSTRAP"])
        except Exception as exc:  # recorded: the other engine still runs
            results[engine] = {"tracks": tracks, "agrees": False, "error": f"{type(exc).__name__}: {exc}"[:3000]}
    results["live_failed"] = sorted(name for name, result in results.items() if not result["agrees"])
    return results


def run_section(env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """The catch-up rate, then the live migrations."""
    result = run_all(env, workdir)
    result["live"] = live_migrations(env, workdir)
    return result


def main() -> int:
    with tempfile.TemporaryDirectory() as workdir:
        result = run_section(dict(os.environ), Path(workdir))
    sys.stdout.write(orjson.dumps({"machine": machine(), "assemble": result}, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
