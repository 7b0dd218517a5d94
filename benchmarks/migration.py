"""Template migration against its ceilings, per RDBMS, in one run: backfill, template read, verify, verify's memory.

For each of PostgreSQL and MariaDB: a generated catalog of TUNEFLOW_BENCH_MIGRATION_TRACKS tracks (default 20,000;
the issue's figure is 1,000,000) in a scratch database, written to a scratch database of the stack's FerretDB.
- backfill (`migrate start`, tracks) against the store's raw `insert_many` of the very same documents, and against a
  naive loader (one track with its joins read, one insert) on the same store; the projected time for 12.7M tracks;
- the template read alone (rows to documents, no writes);
- a clean `verify` against streaming every document out of the target and out of the template read, side by side;
- the peak RSS of each timed `verify` process (the issue's bound: 300 MB at 1,000,000 tracks);
- where a ratio falls short on FerretDB, a step-by-step cost table of the naive loader's and the backfill's work;
- the acceptance check at TUNEFLOW_BENCH_ACCEPTANCE_TRACKS tracks (default 200,000; 0 skips it): migrate, verify
  clean, then tamper with target and source and verify names exactly those keys (exit 1). Too slow for the test
  suite; its verdict and timings are in the report, and a failed check makes the run exit 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from pymongo import MongoClient
from sqlalchemy import Engine, text

from benchmarks.harness import REPEATS, measure
from streams.catalog.dburl import make_engine
from streams.catalog.generator import generate_catalog
from streams.cli.migrate import start
from streams.migration.backfill import plan_chunks
from streams.migration.source import bind_template
from streams.migration.template import catalog_template_path, load_template
from streams.migration.template_reader import KeyRange
from streams.stores.mongo import VISIBLE
from tests.integration.services import scratch_database
from tests.migration_oracle import tamper_catalog

TRACKS = int(os.environ.get("TUNEFLOW_BENCH_MIGRATION_TRACKS", "20000"))
NAIVE_SAMPLE = int(os.environ.get("TUNEFLOW_BENCH_NAIVE_TRACKS", "500"))
ACCEPTANCE_TRACKS = int(os.environ.get("TUNEFLOW_BENCH_ACCEPTANCE_TRACKS", "200000"))
# "all", or "verify": only what verify's memory needs (one backfill, then timed verifies with their peak RSS).
MEASURES = os.environ.get("TUNEFLOW_BENCH_MIGRATION_MEASURES", "all")
SOURCES = os.environ.get("TUNEFLOW_BENCH_MIGRATION_SOURCES", "postgresql,mariadb").split(",")
CHUNK_ROWS = 5000
VIBE_TRACKS = 12_700_000
INSERT_BATCH = 1000


def run_all(env: dict[str, str]) -> dict[str, Any]:
    results: dict[str, Any] = {"load": _load()}
    checks: list[dict[str, Any]] = []
    for kind, variable in (("postgresql", "TUNEFLOW_PG_URL"), ("mariadb", "TUNEFLOW_MYSQL_URL")):
        if kind not in SOURCES:
            continue
        if TRACKS:
            print(f"migration from {kind} ({TRACKS:,} tracks) into FerretDB:", flush=True)
            results[kind] = run_one(env[variable], env["TUNEFLOW_MONGO_URI"])
    for kind, variable in (("postgresql", "TUNEFLOW_PG_URL"), ("mariadb", "TUNEFLOW_MYSQL_URL")):
        if kind in SOURCES and ACCEPTANCE_TRACKS:
            print(f"acceptance from {kind} ({ACCEPTANCE_TRACKS:,} tracks) into FerretDB:", flush=True)
            checks.append(acceptance(kind, env[variable], env["TUNEFLOW_MONGO_URI"], ACCEPTANCE_TRACKS))
    results["checks"] = checks
    results["failed_checks"] = [check["name"] for check in checks if not check["passed"]]
    results["load_after"] = _load()
    return results


def _load() -> str:
    """`uptime`'s load averages: the machine is shared, so every report says how busy it was."""
    with open("/proc/loadavg") as loadavg:
        return " ".join(loadavg.read().split()[:3])


def _tuneflow(home: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "TUNEFLOW_HOME": str(home)})
    return done, round(time.perf_counter() - started, 1)


def acceptance(kind: str, server_url: str, mongo_uri: str, tracks: int) -> dict[str, Any]:
    """Migrate, verify clean, tamper, verify names exactly the tampered keys: the issue's check at `tracks`."""
    template = str(catalog_template_path())
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"tf-bench-home-{uuid.uuid4().hex[:8]}"
    seconds: dict[str, float] = {}
    failures: list[str] = []
    with scratch_database(server_url, "tf_bench") as source, _scratch_target(mongo_uri) as (client, database):
        started = time.perf_counter()
        generate_catalog(source, tracks, seed=5)
        seconds["generate"] = round(time.perf_counter() - started, 1)
        common = ("--source", source, "--target", mongo_uri, "--database", database, "--template", template)
        migrated, seconds["migrate start (all collections)"] = _tuneflow(home, "migrate", "start", *common)
        if migrated.returncode != 0:
            failures.append(f"migrate exited {migrated.returncode}: {migrated.stderr[-500:]}")
        clean, seconds["verify (clean, all collections)"] = _tuneflow(home, "verify", *common, "--json")
        if clean.returncode != 0:
            failures.append(f"clean verify exited {clean.returncode}: {clean.stdout[-500:]}{clean.stderr[-500:]}")
        engine = make_engine(source)
        try:
            expected = tamper_catalog(client, database, engine)
        finally:
            engine.dispose()
        tampered, seconds["verify (tampered, tracks)"] = _tuneflow(home, "verify", *common, "--collections",
                                                                    "tracks", "--json")
        wanted = {kind: expected[kind] for kind in ("missing", "extra", "different")}
        found = json.loads(tampered.stdout)["collections"][0]["keys"] if tampered.stdout.startswith("{") else None
        if tampered.returncode != 1 or found != wanted:
            failures.append(f"tampered verify exited {tampered.returncode}, named {found}, wanted {wanted}")
    check = {"name": f"acceptance {kind} {tracks:,} tracks", "passed": not failures, "failures": failures,
             "seconds": seconds, "tampered_keys": wanted, "named_keys": found}
    print(f"  {'PASSED' if check['passed'] else 'FAILED'} {check['name']}: {seconds}", flush=True)
    for failure in failures:
        print(f"    {failure}", flush=True)
    return check


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

    if MEASURES == "verify":
        return _verify_only(engine, source, template, mongo_uri, client, database)
    # The documents the backfill writes, kept as JSON (a million dicts would take gigabytes here); turning them
    # back into dicts is left out of the ceiling's time, so the store's insert_many does only its own work.
    encoded = [orjson.dumps(doc | {"_version": 1, "_deleted": False}) for doc in read_all()]
    raw = client[database]["raw"]

    def insert_many() -> float:
        spent = 0.0
        for begin in range(0, len(encoded), INSERT_BATCH):
            batch = [orjson.loads(item) for item in encoded[begin : begin + INSERT_BATCH]]
            started = time.perf_counter()
            raw.insert_many(batch, ordered=False)
            spent += time.perf_counter() - started
        return spent

    tracks = client[database]["tracks"]
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"tf-bench-home-{uuid.uuid4().hex[:8]}"

    def backfill() -> None:
        os.environ["TUNEFLOW_HOME"] = str(home)
        start.main(["--source", source, "--target", mongo_uri, "--database", database, "--template", template,
                    "--collections", "tracks", "--chunk-rows", str(CHUNK_ROWS), "--parallel", "2"],
                   standalone_mode=False)

    naive = client[database]["naive"]
    sample = [orjson.loads(item)["_id"] for item in encoded[:NAIVE_SAMPLE]]
    steps: dict[str, float] = {}

    def naive_loader() -> None:
        steps.clear()
        with engine.connect() as conn:
            for track_id in sample:
                document = _naive_track(conn, track_id, steps)
                started = time.perf_counter()
                naive.insert_one(document)
                steps["insert_one"] += time.perf_counter() - started

    documents = len(encoded)
    results = [
        measure("template read (rows to documents, no writes)", documents, template_read, unit="documents/s"),
        _measure_timed(f"store insert_many (batch {INSERT_BATCH}), same documents", documents, insert_many,
                       setup=raw.drop),
        measure("backfill: migrate start --parallel 2", documents, backfill, setup=tracks.drop,
                unit="documents/s"),
        measure("naive loader: one track's rows read, one insert", len(sample), naive_loader, setup=naive.drop,
                unit="documents/s", repeats=1),
    ]
    encoded.clear()
    results.append({"name": "naive loader: cost per track by step", "unit": "ms",
                    **{step: round(1000 * spent / len(sample), 3) for step, spent in steps.items()}})
    def stream_both() -> None:
        for _ in read_all():
            pass
        # Unordered, as verify reads FerretDB (which would sort a whole collection in memory for an ordered scan).
        for _ in tracks.find(VISIBLE, batch_size=1000):
            pass

    verify_command = [sys.executable, "-m", "streams.cli", "verify", "--source", source, "--target", mongo_uri,
                      "--database", database, "--template", template, "--collections", "tracks"]
    peaks: list[float] = []

    def verify() -> None:
        code, peak = _run_with_peak_rss(verify_command, home)
        assert code == 0, f"verify exited {code}"
        peaks.append(peak)

    results += [
        measure("stream template read and target side by side", documents, stream_both, unit="documents/s"),
        measure("verify (clean, key-range hashes)", documents, verify, unit="documents/s"),
    ]
    results.append({"name": "verify peak RSS", "unit": "MB", "median": statistics.median(peaks), "runs": peaks,
                    "bound": 300})
    print(f"  {'verify peak RSS':<48} {statistics.median(peaks):>12,.1f} MB  (runs: {peaks})", flush=True)
    rates = {result["name"]: result.get("median") for result in results}
    backfill_rate = rates["backfill: migrate start --parallel 2"]
    results.append({
        "name": "ratios", "unit": "",
        "backfill / insert_many": round(backfill_rate / rates[f"store insert_many (batch {INSERT_BATCH}), same "
                                                               "documents"], 3),
        "backfill / naive loader": round(backfill_rate / rates["naive loader: one track's rows read, one insert"], 1),
        "insert_many / naive loader (the most any loader on this store can reach)": round(
            rates[f"store insert_many (batch {INSERT_BATCH}), same documents"]
            / rates["naive loader: one track's rows read, one insert"], 1),
        "verify / streaming both sides": round(rates["verify (clean, key-range hashes)"]
                                               / rates["stream template read and target side by side"], 3),
        "projected hours for 12.7M tracks": round(VIBE_TRACKS / backfill_rate / 3600, 2),
    })
    print(f"  ratios: {results[-1]}", flush=True)
    return results


def _verify_only(engine: Engine, source: str, template: str, mongo_uri: str, client: MongoClient[dict[str, Any]],
                 database: str) -> list[dict[str, Any]]:
    """One backfill of the tracks, then timed clean verifies with their peak RSS (no ceilings)."""
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"tf-bench-home-{uuid.uuid4().hex[:8]}"
    with engine.connect() as conn:
        documents = conn.execute(text("SELECT count(*) FROM track")).scalar_one()
    started = time.perf_counter()
    migrated, _ = _tuneflow(home, "migrate", "start", "--source", source, "--target", mongo_uri, "--database",
                            database, "--template", template, "--collections", "tracks", "--chunk-rows",
                            str(CHUNK_ROWS), "--parallel", "2")
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    backfill = {"name": "backfill: migrate start --parallel 2", "unit": "documents/s", "items": documents,
                "median": round(documents / (time.perf_counter() - started), 1), "runs": 1}
    print(f"  {backfill['name']:<48} {backfill['median']:>12,.0f} documents/s", flush=True)
    command = [sys.executable, "-m", "streams.cli", "verify", "--source", source, "--target", mongo_uri,
               "--database", database, "--template", template, "--collections", "tracks"]
    peaks: list[float] = []

    def verify() -> None:
        code, peak = _run_with_peak_rss(command, home)
        assert code == 0, f"verify exited {code}"
        peaks.append(peak)

    result = measure("verify (clean, key-range hashes)", documents, verify, unit="documents/s")
    print(f"  {'verify peak RSS':<48} {statistics.median(peaks):>12,.1f} MB  (runs: {peaks})", flush=True)
    return [backfill, result, {"name": "verify peak RSS", "unit": "MB", "median": statistics.median(peaks),
                               "runs": peaks, "bound": 300}]


def _measure_timed(name: str, items: int, run: Callable[[], float], setup: Callable[[], None]) -> dict[str, Any]:
    """Like `measure`, for a `run` that returns the seconds of its own work (preparation left out)."""
    rates = []
    for _ in range(REPEATS):
        setup()
        rates.append(items / run())
    result = {"name": name, "unit": "documents/s", "items": items, "median": round(statistics.median(rates), 1),
              "runs": [round(r, 1) for r in rates]}
    print(f"  {name:<48} {result['median']:>12,.0f} documents/s  (runs: {', '.join(f'{r:,.0f}' for r in rates)})",
          flush=True)
    return result


def _run_with_peak_rss(command: list[str], home: Path) -> tuple[int, float]:
    """Run `command`; its exit code and its own high-water mark in MB (VmHWM, which starts afresh at exec).

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
    return process.returncode, round(peak_kb / 1024, 1)


def _naive_track(conn: Any, track_id: int, steps: dict[str, float]) -> dict[str, Any]:
    """What a row-by-row loader does: one track, its album, credits and genres, one query each (timed by step)."""

    @contextlib.contextmanager
    def step(name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        steps[name] = steps.get(name, 0.0) + time.perf_counter() - started

    with step("select track"):
        track = conn.execute(text("SELECT * FROM track WHERE track_id = :id"), {"id": track_id}).mappings().one()
    with step("select album"):
        album = conn.execute(text("SELECT album_id, title, album_type, release_date, label FROM album "
                                  "WHERE album_id = :id"), {"id": track["album_id"]}).mappings().one()
    with step("select artists"):
        artists = conn.execute(text("SELECT a.artist_id, a.name, ta.role FROM track_artist ta JOIN artist a "
                                    "ON a.artist_id = ta.artist_id WHERE ta.track_id = :id ORDER BY ta.ord"),
                               {"id": track_id}).mappings().all()
    with step("select genres"):
        genres = conn.execute(text("SELECT g.name FROM track_genre tg JOIN genre g ON g.genre_id = tg.genre_id "
                                   "WHERE tg.track_id = :id ORDER BY g.name"), {"id": track_id}).scalars().all()
    steps.setdefault("insert_one", 0.0)
    return {"_id": track_id, "title": track["title"], "disc_no": track["disc_no"], "track_no": track["track_no"],
            "duration_ms": track["duration_ms"], "isrc": track["isrc"], "explicit": bool(track["explicit"]),
            "album": {**album, "release_date": str(album["release_date"])}, "artists": [dict(a) for a in artists],
            "genres": list(genres), "updated_at": track["updated_at"], "_version": 1, "_deleted": False}


if __name__ == "__main__":
    started = time.perf_counter()
    print(run_all(dict(os.environ)))
    print(f"{time.perf_counter() - started:.0f}s")
