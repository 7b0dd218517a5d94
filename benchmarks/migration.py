"""Template migration against its ceilings, per RDBMS, in one run: backfill, template read, verify, verify's memory.

For each of PostgreSQL and MariaDB: a generated catalog of TUNEFLOW_BENCH_MIGRATION_TRACKS tracks (default 20,000;
the issue's figure is 1,000,000) in a scratch database, written to a scratch database of the stack's FerretDB.
- backfill (`migrate start`, tracks) against the store's raw `insert_many` of the very same documents, and against a
  naive loader (one track with its joins read, one insert) on the same store; the projected time for 12.7M tracks;
- the template read alone (rows to documents, no writes);
- a clean `verify` against streaming every document out of the target and out of the template read, side by side;
- the peak RSS of a `verify` process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from sqlalchemy import Engine, text

from benchmarks.harness import measure
from streams.catalog.dburl import make_engine
from streams.catalog.generator import generate_catalog
from streams.cli.migrate import start
from streams.migration.backfill import plan_chunks
from streams.migration.source import bind_template
from streams.migration.template import catalog_template_path, load_template
from streams.migration.template_reader import KeyRange
from streams.stores.mongo import MongoStore
from tests.integration.services import scratch_database

TRACKS = int(os.environ.get("TUNEFLOW_BENCH_MIGRATION_TRACKS", "20000"))
NAIVE_SAMPLE = int(os.environ.get("TUNEFLOW_BENCH_NAIVE_TRACKS", "500"))
SOURCES = os.environ.get("TUNEFLOW_BENCH_MIGRATION_SOURCES", "postgresql,mariadb").split(",")
CHUNK_ROWS = 5000
VIBE_TRACKS = 12_700_000
INSERT_BATCH = 1000


def run_all(env: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {}
    for kind, variable in (("postgresql", "TUNEFLOW_PG_URL"), ("mariadb", "TUNEFLOW_MYSQL_URL")):
        if kind not in SOURCES:
            continue
        print(f"migration from {kind} ({TRACKS:,} tracks) into FerretDB:", flush=True)
        results[kind] = run_one(env[variable], env["TUNEFLOW_MONGO_URI"])
    return results


@contextlib.contextmanager
def _scratch_target(uri: str) -> Iterator[tuple[MongoClient[dict[str, Any]], str]]:
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=10_000)
    name = f"tf_bench_{uuid.uuid4().hex[:8]}"
    try:
        yield client, name
    finally:
        client.drop_database(name)
        client.close()


def run_one(server_url: str, mongo_uri: str) -> list[dict[str, Any]]:
    template = str(catalog_template_path())
    with scratch_database(server_url, "tf_bench") as source, _scratch_target(mongo_uri) as (client, database):
        generate_catalog(source, TRACKS, seed=1)
        engine = make_engine(source)
        try:
            results = _measure(engine, source, template, mongo_uri, client, database)
        finally:
            engine.dispose()
    return results


def _measure(engine: Engine, source: str, template: str, mongo_uri: str, client: MongoClient[dict[str, Any]],
             database: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        reader = bind_template(load_template(template), conn, ["tracks"]).readers["tracks"]
        chunks = plan_chunks(conn, reader, CHUNK_ROWS)

    def read_all() -> Iterator[dict[str, Any]]:
        with engine.connect() as conn:
            for chunk in chunks:
                for item in reader.read(conn, KeyRange(chunk.after, chunk.upto)):
                    assert item.document is not None
                    yield item.document

    def template_read() -> None:
        for _ in read_all():
            pass

    documents = [doc | {"_version": 1, "_deleted": False} for doc in read_all()]
    raw = client[database]["raw"]

    def insert_many() -> None:
        for begin in range(0, len(documents), INSERT_BATCH):
            raw.insert_many([dict(d) for d in documents[begin : begin + INSERT_BATCH]], ordered=False)

    tracks = client[database]["tracks"]
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"tf-bench-home-{uuid.uuid4().hex[:8]}"

    def backfill() -> None:
        os.environ["TUNEFLOW_HOME"] = str(home)
        start.main(["--source", source, "--target", mongo_uri, "--database", database, "--template", template,
                    "--collections", "tracks", "--chunk-rows", str(CHUNK_ROWS), "--parallel", "2"],
                   standalone_mode=False)

    naive = client[database]["naive"]
    sample = [doc["_id"] for doc in documents[:NAIVE_SAMPLE]]

    def naive_loader() -> None:
        with engine.connect() as conn:
            for track_id in sample:
                naive.insert_one(_naive_track(conn, track_id))

    results = [
        measure("template read (rows to documents, no writes)", len(documents), template_read, unit="documents/s"),
        measure(f"store insert_many (batch {INSERT_BATCH}), same documents", len(documents), insert_many,
                setup=raw.drop, unit="documents/s"),
        measure("backfill: migrate start --parallel 2", len(documents), backfill, setup=tracks.drop,
                unit="documents/s"),
        measure("naive loader: one track's rows read, one insert", len(sample), naive_loader, setup=naive.drop,
                unit="documents/s", repeats=1),
    ]
    store = MongoStore(mongo_uri, database, client=client)

    def stream_both() -> None:
        for _ in read_all():
            pass
        for _ in store.scan("tracks"):
            pass

    verify_command = [sys.executable, "-m", "streams.cli", "verify", "--source", source, "--target", mongo_uri,
                      "--database", database, "--template", template, "--collections", "tracks"]

    def verify() -> None:
        finished = subprocess.run(verify_command, capture_output=True, text=True,
                                  env={**os.environ, "TUNEFLOW_HOME": str(home)})
        assert finished.returncode == 0, finished.stdout + finished.stderr

    results += [
        measure("stream template read and target side by side", len(documents), stream_both, unit="documents/s"),
        measure("verify (clean, key-range hashes)", len(documents), verify, unit="documents/s"),
        {"name": "verify peak RSS", "unit": "MB", "median": _peak_rss_mb(verify_command, home)},
    ]
    rates = {result["name"]: result["median"] for result in results}
    backfill_rate = rates["backfill: migrate start --parallel 2"]
    results.append({
        "name": "ratios", "unit": "",
        "backfill / insert_many": round(backfill_rate / rates[f"store insert_many (batch {INSERT_BATCH}), same "
                                                               "documents"], 3),
        "backfill / naive loader": round(backfill_rate / rates["naive loader: one track's rows read, one insert"], 1),
        "verify / streaming both sides": round(rates["verify (clean, key-range hashes)"]
                                               / rates["stream template read and target side by side"], 3),
        "projected hours for 12.7M tracks": round(VIBE_TRACKS / backfill_rate / 3600, 2),
    })
    print(f"  ratios: {results[-1]}", flush=True)
    return results


def _peak_rss_mb(command: list[str], home: Path) -> float:
    """The verify process's own high-water mark (VmHWM, which starts afresh at exec), read while it runs.

    Not the child's rusage: that counts the pages it shared with this (large) process between fork and exec.
    """
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "TUNEFLOW_HOME": str(home)})
    peak_kb = 0
    while process.poll() is None:
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        time.sleep(0.05)
    peak = round(peak_kb / 1024, 1)
    print(f"  {'verify peak RSS':<48} {peak:>12,.1f} MB", flush=True)
    return peak


def _naive_track(conn: Any, track_id: int) -> dict[str, Any]:
    """What a row-by-row loader does: one track, its album, credits and genres, one query each."""
    track = conn.execute(text("SELECT * FROM track WHERE track_id = :id"), {"id": track_id}).mappings().one()
    album = conn.execute(text("SELECT album_id, title, album_type, release_date, label FROM album "
                              "WHERE album_id = :id"), {"id": track["album_id"]}).mappings().one()
    artists = conn.execute(text("SELECT a.artist_id, a.name, ta.role FROM track_artist ta JOIN artist a "
                                "ON a.artist_id = ta.artist_id WHERE ta.track_id = :id ORDER BY ta.ord"),
                           {"id": track_id}).mappings().all()
    genres = conn.execute(text("SELECT g.name FROM track_genre tg JOIN genre g ON g.genre_id = tg.genre_id "
                               "WHERE tg.track_id = :id ORDER BY g.name"), {"id": track_id}).scalars().all()
    return {"_id": track_id, "title": track["title"], "disc_no": track["disc_no"], "track_no": track["track_no"],
            "duration_ms": track["duration_ms"], "isrc": track["isrc"], "explicit": bool(track["explicit"]),
            "album": {**album, "release_date": str(album["release_date"])}, "artists": [dict(a) for a in artists],
            "genres": list(genres), "updated_at": track["updated_at"], "_version": 1, "_deleted": False}


if __name__ == "__main__":
    started = time.perf_counter()
    print(run_all(dict(os.environ)))
    print(f"{time.perf_counter() - started:.0f}s")
