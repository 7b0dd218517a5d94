"""Reads that follow the switch: `GET /tracks/{id}` answered from the store the switch reads, on a generated SQLite
catalog (through the template) and the embedded document store; sampled shadow reads counted by result."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, text

from streams.catalog.generator import generate_catalog
from streams.http.app import Ingest, build_app
from streams.http.auth import BearerTokens
from streams.http.intake import Intake
from streams.http.limits import Limits
from streams.http.metrics import HttpMetrics
from streams.migration.backfill import backfill_tracks
from streams.migration.phases import Phase, PhaseView, StoreRole, SwitchState, routing
from streams.migration.reads import RelationalReader, StoreReader, SwitchedReads, same_content
from streams.stores.embedded import EmbeddedStore
from tests.migration_oracle import CATALOG_TEMPLATE

TOKEN = "reads-Token-1"
LABELS = ("s", "http", "0")


@dataclass
class Settable(PhaseView):
    state: SwitchState

    def current(self) -> SwitchState:
        return self.state

    def set(self, phase: Phase) -> None:
        self.state = SwitchState("m", phase, routing(phase).reads, self.state.epoch + 1)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A 300-track SQLite catalog, and an embedded store holding the same tracks."""
    root = tmp_path_factory.mktemp("reads")
    url = f"sqlite:///{root / 'legacy.sqlite'}"
    generate_catalog(url, 300, seed=5)
    store_dir = root / "store"
    store, engine = EmbeddedStore(store_dir), create_engine(url)
    try:
        backfill_tracks(engine, store)
    finally:
        store.close()
        engine.dispose()
    return url, store_dir


@pytest.fixture
def served(catalog: tuple[str, Path]) -> Iterator[tuple[httpx.AsyncClient, Settable, CollectorRegistry, str]]:
    url, store_dir = catalog
    view = Settable(SwitchState("m", Phase.LEGACY, StoreRole.RDBMS, 1))
    registry = CollectorRegistry()
    readers = {StoreRole.RDBMS: RelationalReader(url, str(CATALOG_TEMPLATE), "tracks"),
               StoreRole.MONGO: StoreReader(f"embedded://{store_dir}", "catalog", "tracks")}
    reads = SwitchedReads(view, readers, sample=1.0, registry=registry, labels=LABELS)
    ingest = Ingest(Intake(), Limits(), BearerTokens(None, TOKEN), None,
                    HttpMetrics(registry, *LABELS[:2], 0), registry, lambda: True, reads=reads)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(ingest)), base_url="http://t",
                               headers={"Authorization": f"Bearer {TOKEN}"})
    yield client, view, registry, url
    reads.close()


def _get(client: httpx.AsyncClient, path: str, **kwargs: object) -> httpx.Response:
    return asyncio.run(client.get(path, **kwargs))  # type: ignore[arg-type]


def _counted(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, {"stream": "s", "app": "http", "instance": "0", **labels})
    return value or 0.0


def _a_track(url: str) -> int:
    with create_engine(url).connect() as conn:
        return int(conn.execute(text("SELECT MIN(track_id) FROM track")).scalar_one())


def test_reads_follow_the_phase_and_name_the_store(served: tuple[httpx.AsyncClient, Settable, CollectorRegistry,
                                                                 str]) -> None:
    client, view, registry, url = served
    key = _a_track(url)
    from_rdbms = _get(client, f"/tracks/{key}")
    assert from_rdbms.status_code == 200
    assert from_rdbms.headers["X-Tuneflow-Read-Store"] == "rdbms"
    assert from_rdbms.json()["_id"] == key and from_rdbms.json()["album"]["album_id"] > 0

    view.set(Phase.DUAL_MONGO_PRIMARY)
    from_mongo = _get(client, f"/tracks/{key}")
    assert from_mongo.headers["X-Tuneflow-Read-Store"] == "mongo"
    assert same_content(from_rdbms.json(), from_mongo.json())
    assert _counted(registry, "tuneflow_reads_total", store="rdbms") == 1
    assert _counted(registry, "tuneflow_reads_total", store="mongo") == 1
    assert _counted(registry, "tuneflow_shadow_reads_total", result="match") == 0  # no comparing outside shadow


def test_the_shadow_phase_compares_a_sample_and_counts_mismatches(
        served: tuple[httpx.AsyncClient, Settable, CollectorRegistry, str], catalog: tuple[str, Path]) -> None:
    client, view, registry, url = served
    key = _a_track(url)
    view.set(Phase.DUAL_RDBMS_PRIMARY)
    assert _get(client, f"/tracks/{key}").status_code == 200
    assert _counted(registry, "tuneflow_shadow_reads_total", result="match") == 1

    with create_engine(url).begin() as conn:  # the RDBMS moves on; the shadow has not seen it
        conn.execute(text("UPDATE track SET title = 'Changed only in the RDBMS' WHERE track_id = :k"), {"k": key})
    try:
        answer = _get(client, f"/tracks/{key}")
        assert answer.json()["title"] == "Changed only in the RDBMS"
        assert _counted(registry, "tuneflow_shadow_reads_total", result="mismatch") == 1
    finally:
        with create_engine(url).begin() as conn:
            conn.execute(text("UPDATE track SET title = 'restored' WHERE track_id = :k"), {"k": key})


def test_unknown_ids_bad_ids_and_no_token(served: tuple[httpx.AsyncClient, Settable, CollectorRegistry,
                                                        str]) -> None:
    client, _, _, _ = served
    missing = _get(client, "/tracks/999999999")
    assert missing.status_code == 404 and missing.json()["message"] == "no track 999999999"
    assert _get(client, "/tracks/abc").status_code == 404
    refused = _get(client, "/tracks/1", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401 and "WWW-Authenticate" in refused.headers


def test_without_reads_get_is_not_a_route() -> None:
    registry = CollectorRegistry()
    ingest = Ingest(Intake(), Limits(), None, None, HttpMetrics(registry, "s", "http", 0), registry, lambda: True)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(ingest)), base_url="http://t")
    answer = asyncio.run(client.get("/tracks/1"))
    assert answer.status_code == 405
