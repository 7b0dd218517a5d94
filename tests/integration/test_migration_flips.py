"""The migration switch under load, deployed with the local deployer as a user would, on real PostgreSQL, Kafka and
FerretDB: `http | normalize | dual-write`, both following the switch of one migration.

Flips: HTTP writes at 500 tracks/s while the switch goes legacy → dual-rdbms-primary (then `migrate start`
backfills the document store, and `verify --recheck` finds the stores agreeing under the load) → dual-mongo-primary
through the gate, and five times back and forward again through it; afterwards every
acknowledged write is in both stores at its newest version, `verify` is clean, and no `GET /tracks/{id}` ever
returned an older version than a read before it had seen. Outage: the shadow store stops for 30 s; the primary
goes on, the backlog rises, a flip is refused naming it, and the backlog is repaired to zero.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pymongo import MongoClient

from streams.migration.template import load_template
from streams.runtime.metrics import metric_sum
from streams.serde import business_fields
from streams.stores.relational import RelationalStore
from tests.integration.ferretdb_server import FerretDBServer, ferretdb_on_pg
from tests.integration.processes import free_port, wait_for
from tests.integration.services import scratch_database, unique_name
from tests.integration.track_load import Document, TrackReader, TrackWriter, stale_reads, version_of
from tests.migration_oracle import CATALOG_TEMPLATE

CATALOG_TRACKS = 1500
HOT_TRACKS = 150
RATE = 500.0
LOAD_S = 30


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Migration:
    """A legacy catalog in a scratch PostgreSQL database, a FerretDB of the test's own, and the tuneflow CLI with a
    home of its own: `stream`, `switch`, `migrate` and `verify` as a user types them."""

    def __init__(self, home: Path, kafka: str, rdbms_url: str, ferretdb: FerretDBServer) -> None:
        self.rdbms_url, self.ferretdb = rdbms_url, ferretdb
        self.env = {**os.environ, "TUNEFLOW_HOME": str(home), "TUNEFLOW_KAFKA_BOOTSTRAP": kafka,
                    "TUNEFLOW_MONGO_URI": ferretdb.uri}
        self.env.pop("TUNEFLOW_DB_URL", None)
        self.name = unique_name("flips")
        self.stream = self.name.replace("_", "-")
        self.database = unique_name("tf_flips")
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.ports: dict[str, int] = {}

    def tuneflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                                env=self.env, timeout=timeout)
        log(f"tuneflow {' '.join(args[:3])} … exit {result.returncode} in {time.monotonic() - started:.1f}s")
        return result

    def ok(self, *args: str, timeout: float = 300) -> str:
        result = self.tuneflow(*args, timeout=timeout)
        assert result.returncode == 0, f"tuneflow {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def switch(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.tuneflow("switch", *args, "--migration", self.name)

    def deploy(self) -> None:
        mongo = f"{self.ferretdb.uri}/?serverSelectionTimeoutMS=1500"
        definition = (
            f"http --port={self.http_port} --insecure-no-auth=true --migration={self.name} "
            f"--read-rdbms-url={self.rdbms_url} --read-mongo-uri={mongo} --read-database={self.database} "
            f"--shadow-read-sample=0.2 "
            f"| normalize "
            f"| dual-write --rdbms-url={self.rdbms_url} --mongo-uri={mongo} --database={self.database} "
            f"--migration={self.name}")
        self.ok("stream", "create", self.stream, "--deploy", "--definition", definition)

    def status(self) -> list[dict[str, Any]]:
        return list(orjson.loads(self.ok("stream", "status", self.stream, "--json")))

    def metrics(self, label: str) -> str:
        if label not in self.ports:
            (instance,) = [s for s in self.status() if s["label"] == label]
            self.ports[label] = instance["port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[label]}/metrics", timeout=5) as answer:
            return str(answer.read().decode())

    def lag(self) -> float:
        return sum(s["lag"] for s in self.status())

    def verify(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.tuneflow("verify", "--source", self.rdbms_url, "--target", self.ferretdb.uri, "--template",
                             str(CATALOG_TEMPLATE), "--collections", "tracks", "--database", self.database, *extra)

    def in_rdbms(self, keys: list[int]) -> dict[int, Document]:
        store = RelationalStore(self.rdbms_url, load_template(CATALOG_TEMPLATE))
        try:
            store.open(["tracks"])
            return {k: business_fields(d) for start in range(0, len(keys), 500)
                    for k, d in store.get_many("tracks", keys[start:start + 500]).items()}
        finally:
            store.close()

    def in_mongo(self) -> dict[int, Document]:
        with MongoClient(self.ferretdb.uri, serverSelectionTimeoutMS=5000) as client:
            return {d["_id"]: business_fields(d)
                    for d in client[self.database]["tracks"].find({"_deleted": {"$ne": True}})}

    def catalog(self) -> list[Document]:
        store = RelationalStore(self.rdbms_url, load_template(CATALOG_TEMPLATE))
        try:
            store.open(["tracks"])
            return [business_fields(d) for batch in store.scan("tracks") for d in batch]
        finally:
            store.close()


def assert_in_both_stores(migration: Migration, latest: dict[int, Document]) -> None:
    in_rdbms, in_mongo = migration.in_rdbms(list(latest)), migration.in_mongo()
    behind = {k: (in_rdbms.get(k, {}).get("updated_at"), in_mongo.get(k, {}).get("updated_at"), d["updated_at"])
              for k, d in latest.items() if in_rdbms.get(k) != d or in_mongo.get(k) != d}
    assert not behind, f"{len(behind)} acknowledged writes not in both stores at their newest version " \
                       f"(rdbms, mongo, acknowledged): {list(behind.items())[:5]}"


@pytest.fixture
def ferretdb(postgres_url: str) -> Iterator[FerretDBServer]:
    with ferretdb_on_pg(postgres_url) as server:
        yield server


@pytest.fixture
def migration(tmp_path: Path, kafka_bootstrap: str, postgres_url: str,
              ferretdb: FerretDBServer) -> Iterator[Migration]:
    with scratch_database(postgres_url, prefix="tf_flips") as url:
        setup = Migration(tmp_path / "home", kafka_bootstrap, url, ferretdb)
        setup.ok("catalog", "generate", "--tracks", str(CATALOG_TRACKS), "--into", url)
        try:
            yield setup
        finally:
            if not ferretdb.running:
                ferretdb.start()
            setup.tuneflow("stream", "undeploy", setup.stream)


class SinkRate:
    """The dual-write sink's records in, sampled: its throughput per stretch of the run, for the log."""

    def __init__(self, migration: Migration) -> None:
        self.migration = migration
        self.last = (time.monotonic(), self.count())

    def count(self) -> float:
        return metric_sum(self.migration.metrics("dual-write"), "tuneflow_records_in_total")

    def sample(self, what: str) -> None:
        now, count = time.monotonic(), self.count()
        then, before = self.last
        self.last = (now, count)
        log(f"dual-write: {count - before:,.0f} records in {now - then:.1f}s ({(count - before) / (now - then):,.0f}/s)"
            f" — {what}")


def test_flips_under_load_lose_no_write_and_never_read_older(migration: Migration) -> None:
    catalog = migration.catalog()
    migration.deploy()
    writer = TrackWriter(migration.url, catalog, HOT_TRACKS, RATE)
    reader = TrackReader(migration.url, writer.ledger, [d["_id"] for d in catalog[:HOT_TRACKS]])
    rate = SinkRate(migration)
    gated = ("--catch-up", "none")  # every write goes through dual-write: no catch-up stream to wait for
    moves = [("rollback",), ("forward", *gated)] * 5

    def flip(*args: str) -> None:
        migration.ok("switch", *args, "--migration", migration.name)
        rate.sample(f"after switch {args[0]}")
        if writer.running and time.monotonic() - started > LOAD_S:
            writer.stop()
            log(f"writer stopped after {LOAD_S}s; the next flips meet the sink's backlog")

    started = time.monotonic()
    writer.start()
    reader.start()
    try:
        time.sleep(3)
        flip("forward")  # → dual-rdbms-primary
        migration.ok("migrate", "start", "--source", migration.rdbms_url, "--target", migration.ferretdb.uri,
                     "--template", str(CATALOG_TEMPLATE), "--collections", "tracks", "--database",
                     migration.database)
        # the gate's clean verify, taken under the load: keys written during the pass are read again until the
        # stores agree; the forward moves below pass the gate with it
        verified = migration.verify("--recheck", "20", "--migration", migration.name, "--json")
        assert verified.returncode == 0, f"verify under load:\n{verified.stdout[-3000:]}\n{verified.stderr[-3000:]}"
        (tracks,) = orjson.loads(verified.stdout)["collections"]
        log(f"verify under load: clean, {tracks['cleared']} differences in flight during the pass, then agreeing")
        flip("forward", *gated)  # → dual-mongo-primary, through the gate
        for move in moves:
            time.sleep(1)
            flip(*move)
        time.sleep(max(0.0, LOAD_S - (time.monotonic() - started)))
    finally:
        writer.stop()
    log(f"writer: {writer.ledger.acknowledged:,} tracks acknowledged in {writer.sent_s:.0f}s "
        f"({writer.ledger.acknowledged / writer.sent_s:,.0f}/s), {len(writer.ledger.latest):,} distinct")
    try:
        wait_for(lambda: migration.lag() == 0, 600, "the stream drained")
        wait_for(lambda: metric_sum(migration.metrics("dual-write"), "tuneflow_shadow_backlog") == 0, 120,
                 "no shadow backlog")
    finally:
        reader.stop()
    rate.sample("drained")
    history = orjson.loads(migration.ok("switch", "history", "--migration", migration.name, "--json"))
    assert not any(c["forced"] for c in history)  # every forward move passed the gate
    assert [(c["from"], c["to"]) for c in history if c["outcome"].startswith("done")] == [
        ("legacy", "dual-rdbms-primary"), ("dual-rdbms-primary", "dual-mongo-primary"),
        *[("dual-mongo-primary", "dual-rdbms-primary"), ("dual-rdbms-primary", "dual-mongo-primary")] * 5]

    assert writer.ledger.refused == []
    latest = {k: business_fields(d) for k, d in writer.ledger.latest.items()}
    assert_in_both_stores(migration, latest)
    result = migration.verify()
    assert result.returncode == 0, f"verify:\n{result.stdout}\n{result.stderr}"

    stores = {read.store for read in reader.reads}
    log(f"reader: {len(reader.reads):,} reads ({', '.join(sorted(stores))}), {len(reader.failures)} failed")
    assert reader.failures == []
    assert stores == {"rdbms", "mongo"}
    assert stale_reads(reader.reads) == []
    for key in list(latest)[:50]:  # and each reads back as its newest version from the store read now
        read = reader.read_once(key)
        assert read is not None and read.version == version_of(latest[key])


OUTAGE_S = 30
OUTAGE_RATE = 100.0


def test_a_shadow_stopped_for_30s_is_repaired_and_a_flip_meanwhile_refused(migration: Migration,
                                                                           ferretdb: FerretDBServer) -> None:
    catalog = migration.catalog()
    migration.deploy()
    migration.ok("switch", "forward", "--migration", migration.name)  # → dual-rdbms-primary: FerretDB is the shadow
    migration.ok("migrate", "start", "--source", migration.rdbms_url, "--target", ferretdb.uri, "--template",
                 str(CATALOG_TEMPLATE), "--collections", "tracks", "--database", migration.database)
    writer = TrackWriter(migration.url, catalog, HOT_TRACKS, OUTAGE_RATE).start()
    try:
        time.sleep(3)
        rate = SinkRate(migration)
        ferretdb.stop()
        stopped = time.monotonic()
        log("FerretDB stopped")
        acknowledged = writer.ledger.acknowledged
        wait_for(lambda: metric_sum(migration.metrics("dual-write"), "tuneflow_shadow_backlog") > 0, OUTAGE_S,
                 "a shadow backlog")
        refused = migration.switch("forward")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "refused by the gate" in refused.stderr
        assert f"shadow backlog: shadow writes still to repair: {migration.stream}.dual-write.repair" in \
            refused.stderr, refused.stderr
        # The primary goes on: writes acknowledged after the shadow stopped reach the RDBMS while it is still down.
        time.sleep(max(0.0, 10 - (time.monotonic() - stopped)))
        before = writer.ledger.snapshot()
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        after = {k: business_fields(d) for k, d in writer.ledger.snapshot().items() if before.get(k) != d}
        written = migration.in_rdbms(list(after))
        landed = sum(1 for k, d in after.items() if written.get(k) == d)
        log(f"in the outage's last {OUTAGE_S - 10}s: {landed:,} of {len(after):,} tracks acknowledged then are in "
            "the primary already")
        assert landed > 0
        backlog = metric_sum(migration.metrics("dual-write"), "tuneflow_shadow_backlog")
        log(f"after {OUTAGE_S}s: shadow backlog {backlog:,.0f}, "
            f"{writer.ledger.acknowledged - acknowledged:,} tracks acknowledged meanwhile")
        assert writer.ledger.acknowledged - acknowledged >= OUTAGE_RATE * OUTAGE_S * 0.8
        assert not ferretdb.running
        rate.sample(f"the {OUTAGE_S}s the shadow was down")
        ferretdb.start()
        log("FerretDB started again")
    finally:
        writer.stop()
    wait_for(lambda: migration.lag() == 0, 300, "the stream drained")
    wait_for(lambda: metric_sum(migration.metrics("dual-write"), "tuneflow_shadow_backlog") == 0, 180,
             "the backlog repaired")
    rate.sample("backlog repaired")
    metrics = migration.metrics("dual-write")
    assert backlog > 0
    assert metric_sum(metrics, "tuneflow_shadow_failures_total") > 0
    assert metric_sum(metrics, "tuneflow_shadow_repairs_total") >= metric_sum(metrics,
                                                                              "tuneflow_shadow_failures_total")
    assert writer.ledger.refused == []
    assert_in_both_stores(migration, {k: business_fields(d) for k, d in writer.ledger.latest.items()})
    result = migration.verify()
    assert result.returncode == 0, f"verify:\n{result.stdout}\n{result.stderr}"
    again = migration.switch("forward")  # still refused (no verify is recorded), but no longer for a backlog
    assert "shadow backlog" not in again.stderr, again.stderr
