"""A live migration end to end, as a user runs it: the catch-up stream (`cdc-… | assemble | mongo`) is deployed with
the local deployer first, so it sees every change; then a writer keeps changing the catalog while `tuneflow migrate
start` copies it; the writer stops, the stream drains, `tuneflow verify` runs, and every document in the target is
compared with what the final tables give, built independently of the template: tracks by the hand-written `assemble`
path (tests/migration_oracle.py), albums and artists by plain SQL here.

Used by tests/integration/test_live_migration.py (small catalog) and benchmarks/assemble.py (200,000 tracks)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from pymongo import MongoClient
from sqlalchemy import Engine, create_engine, text

from streams.catalog.dburl import to_sqlalchemy_url
from streams.catalog.generator import generate_catalog
from streams.serde import business_fields, canonical_json
from tests.integration.pipeline import read_topic
from tests.integration.services import drop_captures, scratch_database, unique_name
from tests.live_writer import CatalogWriter
from tests.migration_oracle import CATALOG_TEMPLATE, assembled_tracks

CDC_APPS = {"postgresql": "cdc-postgres", "mysql": "cdc-mysql"}
COLLECTIONS = ("tracks", "albums", "artists")


class Tuneflow:
    """The CLI in its own home (platform state and the local deployer's files), as a user runs it."""

    def __init__(self, home: Path) -> None:
        self.env = {**os.environ, "TUNEFLOW_HOME": str(home)}
        self.env.pop("TUNEFLOW_DB_URL", None)

    def __call__(self, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout)

    def start(self, *args: str, stderr: Path) -> subprocess.Popen[str]:
        """The command in the background: its output on a pipe, its messages in the file `stderr`."""
        with stderr.open("w") as messages:
            return subprocess.Popen([sys.executable, "-m", "streams.cli", *args], stdout=subprocess.PIPE,
                                    stderr=messages, text=True, env=self.env)

    def ok(self, *args: str, timeout: float = 3600) -> str:
        result = self(*args, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"tuneflow {' '.join(args[:3])} … exited {result.returncode}:\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result.stdout


@contextlib.contextmanager
def catalog(server_url: str, tracks: int) -> Iterator[tuple[str, Engine, float]]:
    """A scratch database holding a generated catalog of `tracks` tracks: its URL, an engine, the seconds it took.
    PostgreSQL's `track` gets REPLICA IDENTITY FULL (assemble needs the album a deleted track was on)."""
    with scratch_database(server_url, prefix="tf_live") as url:
        engine = create_engine(to_sqlalchemy_url(url), pool_size=4)
        started = time.perf_counter()
        generate_catalog(url, tracks, seed=15)
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE track REPLICA IDENTITY FULL"))
        try:
            yield url, engine, time.perf_counter() - started
        finally:
            if engine.dialect.name == "postgresql":
                drop_captures(url)
            engine.dispose()


class Backlog:
    """How far the stream's consumer group is behind its topics (committed offsets against the ends)."""

    def __init__(self, bootstrap: str, stream: str, topics: list[str]) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": stream, "enable.auto.commit": False})
        self.topics = topics

    def ends_and_lag(self) -> tuple[tuple[int, ...], int]:
        parts = [TopicPartition(topic, p) for topic in self.topics
                 for p in self.consumer.list_topics(topic, timeout=10).topics[topic].partitions]
        ends = tuple(self.consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts)
        committed = self.consumer.committed(parts, timeout=10)
        lag = sum(end - max(c.offset, 0) for end, c in zip(ends, committed, strict=True))
        return ends, lag

    def wait_drained(self, quiet_s: float, timeout_s: float) -> float:
        """Seconds until no topic grew for `quiet_s` and every record in them was committed by the stream."""
        started = time.monotonic()
        last, since = None, started
        while time.monotonic() - started < timeout_s:
            ends, lag = self.ends_and_lag()
            if ends != last or lag:
                last, since = ends, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return since - started
            time.sleep(1)
        raise AssertionError(f"the stream did not drain in {timeout_s:.0f}s (lag {self.ends_and_lag()[1]})")

    def close(self) -> None:
        self.consumer.close()


def wait_ready(cli: Tuneflow, stream: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        instances = json.loads(cli.ok("stream", "status", stream, "--json"))
        if instances and all(i["ready"] for i in instances):
            return
        time.sleep(1)
    raise AssertionError(f"stream {stream} not ready in {timeout_s:.0f}s:\n{cli('stream', 'status', stream).stdout}")


def stored(client: MongoClient[dict[str, Any]], database: str, collection: str) -> dict[Any, bytes]:
    return {doc["_id"]: canonical_json(business_fields(doc))
            for doc in client[database][collection].find({"_deleted": {"$ne": True}})}


def _text(value: str) -> str:
    return unicodedata.normalize("NFC", " ".join(value.split()))


def _stamp(value: Any) -> str:
    return value.isoformat() + "Z"


def sql_albums(engine: Engine) -> dict[Any, bytes]:
    """`albums` as plain SQL gives them: album columns, its artists by `ord`, and how many tracks it has."""
    with engine.connect() as conn:
        credits: dict[int, list[dict[str, Any]]] = {}
        for album_id, artist_id, name in conn.execute(text(
                "SELECT aa.album_id, aa.artist_id, ar.name FROM album_artist aa JOIN artist ar "
                "ON ar.artist_id = aa.artist_id ORDER BY aa.album_id, aa.ord, aa.artist_id")):
            credits.setdefault(album_id, []).append({"artist_id": artist_id, "name": _text(name)})
        counts = dict(conn.execute(text("SELECT album_id, count(*) FROM track GROUP BY album_id")).all())
        return {album_id: canonical_json({
            "_id": album_id, "title": _text(title), "album_type": kind,
            "release_date": None if released is None else released.isoformat(),
            "label": (_text(label) or None) if label is not None else None,
            "artists": credits.get(album_id, []), "track_count": counts.get(album_id, 0),
            "updated_at": _stamp(updated)})
            for album_id, title, kind, released, label, updated in conn.execute(text(
                "SELECT album_id, title, album_type, release_date, label, updated_at FROM album"))}


def sql_artists(engine: Engine) -> dict[Any, bytes]:
    with engine.connect() as conn:
        return {artist_id: canonical_json({"_id": artist_id, "name": _text(name), "country": country,
                                           "debut_year": debut, "updated_at": _stamp(updated)})
                for artist_id, name, country, debut, updated in conn.execute(text(
                    "SELECT artist_id, name, country, debut_year, updated_at FROM artist"))}


def differences(expected: dict[Any, bytes], found: dict[Any, bytes]) -> dict[str, list[Any]]:
    return {"missing": sorted(expected.keys() - found.keys())[:20],
            "extra": sorted(found.keys() - expected.keys())[:20],
            "different": sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])[:20]}


def run_live_migration(server_url: str, *, tracks: int, writes_per_s: float, workdir: Path, mongo_uri: str,
                       bootstrap: str, parallel: int = 2, drain_timeout_s: float = 1800) -> dict[str, Any]:
    """The whole story on the server at `server_url`; returns what happened and how long each step took."""
    cli = Tuneflow(workdir / "home")
    stream, target = unique_name("tflive"), unique_name("tf_live")
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    report: dict[str, Any] = {"tracks": tracks, "writes_per_s": writes_per_s}
    with catalog(server_url, tracks) as (url, engine, generated_s):
        report["generate_s"] = round(generated_s, 1)
        cdc = CDC_APPS[engine.dialect.name]
        source_options = "--snapshot=never --heartbeat-s=1" if cdc == "cdc-postgres" else ""
        definition = (f"{cdc} --url={url} {source_options} | assemble --source={url} | "
                      f"mongo --uri={mongo_uri} --database={target}")
        cli.ok("stream", "create", stream, "--definition", definition)
        writer = CatalogWriter(engine, writes_per_s, seed=16)
        backlog = Backlog(bootstrap, stream, [f"{stream}.{cdc}", f"{stream}.assemble"])
        try:
            cli.ok("stream", "deploy", stream)
            wait_ready(cli, stream)
            writer.start()
            time.sleep(2)  # changes before the snapshot too
            started = time.perf_counter()
            cli.ok("migrate", "start", "--source", url, "--target", mongo_uri, "--database", target,
                   "--template", str(CATALOG_TEMPLATE), "--parallel", str(parallel))
            report["migrate_s"] = round(time.perf_counter() - started, 1)
            time.sleep(3)  # and after it
            writer.stop.set()
            writer.join(60)
            if writer.error is not None:
                raise writer.error
            report["writer"] = {"transactions": writer.committed, "operations": dict(sorted(writer.counts.items()))}
            report["drain_s"] = round(backlog.wait_drained(quiet_s=5, timeout_s=drain_timeout_s), 1)
            report["catch_up_s"] = round(time.perf_counter() - started, 1)
            for label in ("assemble", "mongo"):
                letters = read_topic(bootstrap, f"{stream}.{label}.dlq")
                report[f"{label}_dead_letters"] = len(letters)
        finally:
            writer.stop.set()
            backlog.close()
            cli("stream", "undeploy", stream, timeout=120)
        try:
            # verify (its own process) and the independent comparison run side by side: both only read
            started = time.perf_counter()
            verifying = cli.start("verify", "--source", url, "--target", mongo_uri, "--database", target,
                                  "--template", str(CATALOG_TEMPLATE), "--json", stderr=workdir / "verify.err")
            expected = {"tracks": assembled_tracks(engine), "albums": sql_albums(engine),
                        "artists": sql_artists(engine)}
            found = {name: stored(client, target, name) for name in COLLECTIONS}
            report["compare_s"] = round(time.perf_counter() - started, 1)
            report["documents"] = {name: len(found[name]) for name in COLLECTIONS}
            report["differences"] = {name: differences(expected[name], found[name]) for name in COLLECTIONS
                                     if expected[name] != found[name]}
            out, _err = verifying.communicate(timeout=3600)
            report["verify_s"] = round(time.perf_counter() - started, 1)
            report["verify_exit"] = verifying.returncode
            if verifying.returncode not in (0, 1):
                report["verify_error"] = (workdir / "verify.err").read_text()[-3000:]
            report["verify"] = [{k: c.get(k) for k in ("collection", "ok", "source_documents", "target_documents",
                                                        "keys")}
                                for c in json.loads(out or "{}").get("collections", [])]
        finally:
            client.drop_database(target)
            client.close()
    report["agrees"] = (report["verify_exit"] == 0 and not report["differences"]
                        and not report["assemble_dead_letters"] and not report["mongo_dead_letters"])
    return report
