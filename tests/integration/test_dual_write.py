"""`dual-write` over real Kafka, PostgreSQL and FerretDB: both stores written, misfits dead-lettered with their
reasons. A shadow outage and its repair: tests/integration/test_migration_flips.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pymongo import MongoClient

from streams.catalog.dburl import make_engine
from streams.catalog.legacy import create_legacy_schema
from streams.migration.template import load_template
from streams.runtime.metrics import metric_sum
from streams.serde import business_fields
from streams.stores.relational import RelationalStore
from tests import relational_checks as checks
from tests.integration.ferretdb_server import FerretDBServer, ferretdb_on_pg
from tests.integration.pipeline import create_topic, dead_letter_reasons, produce, read_topic
from tests.integration.processes import AppProcess, wait_for
from tests.integration.services import scratch_database, unique_name
from tests.migration_oracle import CATALOG_TEMPLATE

Documents = dict[Any, dict[str, Any]]


class DualWrite:
    """A dual-write sink reading one topic into a scratch PostgreSQL catalog and a scratch FerretDB."""

    def __init__(self, bootstrap: str, rdbms_url: str, ferretdb: FerretDBServer, workdir: Path) -> None:
        self.bootstrap, self.rdbms_url, self.ferretdb, self.workdir = bootstrap, rdbms_url, ferretdb, workdir
        self.stream = unique_name("tfdw")
        self.topic = f"{self.stream}.in"
        self.database = unique_name("tf_dw")
        create_topic(bootstrap, self.topic, 3)
        engine = make_engine(rdbms_url)
        create_legacy_schema(engine)
        engine.dispose()
        self.rdbms = RelationalStore(rdbms_url, load_template(CATALOG_TEMPLATE))
        self.rdbms.open(["tracks"])

    def sink(self, phase: str) -> AppProcess:
        uri = f"{self.ferretdb.uri}/?serverSelectionTimeoutMS=1500"
        return AppProcess(["dual-write", "--stream", self.stream, "--label", "dw", "--input", self.topic, "--",
                           f"--mongo-uri={uri}", f"--database={self.database}", f"--rdbms-url={self.rdbms_url}",
                           f"--phase={phase}"], self.workdir, f"dw-{phase}")

    def send(self, documents: list[dict[str, Any]]) -> None:
        produce(self.bootstrap, self.topic, [(str(d["_id"]).encode(), orjson.dumps(d), None) for d in documents])

    def in_rdbms(self) -> Documents:
        return {d["_id"]: business_fields(d) for batch in self.rdbms.scan("tracks") for d in batch}

    def in_mongo(self) -> Documents:
        with MongoClient(self.ferretdb.uri, serverSelectionTimeoutMS=5000) as client:
            return {d["_id"]: business_fields(d)
                    for d in client[self.database]["tracks"].find({"_deleted": {"$ne": True}})}

    def dead_letters(self) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
        return read_topic(self.bootstrap, f"{self.stream}.dw.dlq")

    def close(self) -> None:
        self.rdbms.close()


@pytest.fixture
def ferretdb(postgres_url: str) -> Iterator[FerretDBServer]:
    with ferretdb_on_pg(postgres_url) as server:
        yield server


@pytest.fixture
def dual(kafka_bootstrap: str, postgres_url: str, ferretdb: FerretDBServer, tmp_path: Path) -> Iterator[DualWrite]:
    with scratch_database(postgres_url, prefix="tf_dw") as url:
        setup = DualWrite(kafka_bootstrap, url, ferretdb, tmp_path)
        try:
            yield setup
        finally:
            if not ferretdb.running:
                ferretdb.start()
            setup.close()


def expected(documents: list[dict[str, Any]]) -> Documents:
    latest: Documents = {}
    for document in documents:
        latest[document["_id"]] = document
    return latest


@pytest.mark.parametrize("phase", ["dual-rdbms-primary", "dual-mongo-primary"])
def test_both_stores_written_and_a_misfit_dead_lettered(dual: DualWrite, phase: str) -> None:
    documents = [checks.track(i) for i in range(1, 151)] + [checks.track(i, version=5, title=f"Again {i}")
                                                          for i in range(1, 151, 3)]
    misfit = checks.track(999, title="x" * 501)
    sink = dual.sink(phase).start()
    try:
        sink.wait_ready()
        dual.send([*documents[:100], misfit, *documents[100:]])
        want = expected(documents)
        wait_for(lambda: dual.in_rdbms() == want and dual.in_mongo() == want, 120, "both stores written", sink)
        wait_for(lambda: len(dual.dead_letters()) == 1, 30, "the misfit dead-lettered", sink)
        metrics = sink.metrics()
    finally:
        sink.stop()
    reasons = dead_letter_reasons(dual.dead_letters())
    assert reasons == {b"999": [{"field": "title", "message": "rdbms: 501 characters do not fit VARCHAR(500) "
                                                              "(track.title)"}]}
    assert metric_sum(metrics, "tuneflow_shadow_failures_total") == 0
    assert metric_sum(metrics, "tuneflow_shadow_backlog") == 0
