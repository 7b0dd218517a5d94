"""Dual-write throughput against the slower store's raw write ceiling, for the same changes, in one run.

Each store's ceiling is its own store's `apply` of the changes, in the chunks dual-write writes them in
(PostgreSQL through the catalog template's inverse, FerretDB through the mongo store); dual-write is the same
changes through `DualWriter` (primary first, the shadow one chunk behind), inserts then updates, each on fresh
targets. Each run also reports the machine's busy core-milliseconds per document: the stores' servers and the
client share its cores.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import MongoClient

from benchmarks.harness import REPEATS, cpu_busy_s
from streams.binders.memory import MemoryBinder
from streams.catalog.dburl import make_engine
from streams.catalog.legacy import create_legacy_schema
from streams.migration.dual_write import DualWriter, Outbox, Pending
from streams.migration.phases import FixedPhase, Phase, StoreRole, SwitchState, routing
from streams.migration.shadow_metrics import ShadowMetrics
from streams.migration.template import load_template
from streams.records import Record
from streams.stores.base import Change, DocumentStore
from streams.stores.mongo import MongoStore
from streams.stores.relational import RelationalStore
from tests.integration.services import scratch_database
from tests.migration_oracle import CATALOG_TEMPLATE
from tests.relational_checks import track, upsert

DOCS = int(os.environ.get("TUNEFLOW_BENCH_DUAL_DOCS", "3000"))
BATCH = 500
CORES = os.cpu_count() or 1
CHUNK = 100  # dual-write's default --chunk-size: each store's ceiling writes in the same chunks


@contextmanager
def _targets(env: dict[str, str]) -> Iterator[dict[StoreRole, DocumentStore]]:
    """Fresh stores: the scratch database's tables through the catalog template, a scratch FerretDB database."""
    database = f"tf_bench_dw_{uuid.uuid4().hex[:8]}"
    with scratch_database(env["TUNEFLOW_PG_URL"], prefix="tf_bench_dw") as url:
        engine = make_engine(url)
        create_legacy_schema(engine)
        engine.dispose()
        rdbms = RelationalStore(url, load_template(CATALOG_TEMPLATE))
        rdbms.open(["tracks"])
        mongo = MongoStore(env["TUNEFLOW_MONGO_URI"], database)
        try:
            yield {StoreRole.RDBMS: rdbms, StoreRole.MONGO: mongo}
        finally:
            rdbms.close()
            mongo.close()
            with MongoClient(env["TUNEFLOW_MONGO_URI"]) as client:
                client.drop_database(database)


def _rounds() -> list[list[Change]]:
    inserts = [upsert(track(i)) for i in range(1, DOCS + 1)]
    updates = [upsert(track(i, version=1000, title=f"Updated {i}")) for i in range(1, DOCS + 1)]
    return [inserts, updates]


def _batches(changes: list[Change]) -> list[list[Change]]:
    return [changes[start:start + BATCH] for start in range(0, len(changes), BATCH)]


def _timed(env: dict[str, str], name: str, write: Callable[[dict[StoreRole, DocumentStore], list[Change]], None]
           ) -> list[dict[str, Any]]:
    """Inserts, then updates of stored documents, each `REPEATS` times on fresh targets: the rate, and the machine's
    busy core-seconds per document (every process: the stores' servers, the client)."""
    results = []
    for label, changes in zip(("insert", "update"), _rounds(), strict=True):
        rates, cpu = [], []
        for _ in range(REPEATS):
            with _targets(env) as stores:
                if label == "update":
                    for batch in _batches(_rounds()[0]):  # the documents exist before they are updated
                        for store in stores.values():
                            store.apply("tracks", batch)
                busy, started = cpu_busy_s(), time.perf_counter()
                write(stores, changes)
                seconds = time.perf_counter() - started
                rates.append(len(changes) / seconds)
                cpu.append((cpu_busy_s() - busy) / len(changes) * 1000)
        result = {"name": f"{name} ({label})", "unit": "records/s", "items": len(changes),
                  "median": round(statistics.median(rates), 1), "runs": [round(r, 1) for r in rates],
                  "cpu_ms_per_doc": round(statistics.median(cpu), 3)}
        print(f"  {result['name']:<48} {result['median']:>8,.0f} records/s  (runs: "
              f"{', '.join(f'{r:,.0f}' for r in rates)}; {result['cpu_ms_per_doc']:.2f} busy core-ms/doc)",
              flush=True)
        results.append(result)
    return results


def run_all(env: dict[str, str]) -> dict[str, Any]:
    phase = Phase.DUAL_RDBMS_PRIMARY

    def raw(role: StoreRole) -> Callable[[dict[StoreRole, DocumentStore], list[Change]], None]:
        def write(stores: dict[StoreRole, DocumentStore], changes: list[Change]) -> None:
            for batch in _batches(changes):
                for start in range(0, len(batch), CHUNK):
                    stores[role].apply("tracks", batch[start:start + CHUNK])
        return write

    def dual(stores: dict[StoreRole, DocumentStore], changes: list[Change]) -> None:
        from prometheus_client import CollectorRegistry

        view = FixedPhase(SwitchState("bench", phase, routing(phase).reads, 0))
        writer = DualWriter(stores, "tracks", view, Outbox(MemoryBinder().output(), "bench.dw.repair"),
                            ShadowMetrics(CollectorRegistry(), "bench", "dw", 0), logging.getLogger("bench"),
                            chunk_size=CHUNK)
        try:
            for batch in _batches(changes):
                writer.write([Pending(Record(None, b""), change) for change in batch])
        finally:
            writer.close()

    rdbms, mongo = _timed(env, "rdbms store apply", raw(StoreRole.RDBMS)), _timed(env, "ferretdb store apply",
                                                                                raw(StoreRole.MONGO))
    both = _timed(env, f"dual-write {phase.value}", dual)
    ratios = {label: round(d["median"] / min(r["median"], m["median"]), 3)
              for label, r, m, d in zip(("insert", "update"), rdbms, mongo, both, strict=True)}
    # Both stores' servers and the client share the machine's cores: when the slower store's own writes already
    # keep them busy, the faster store's work can only come out of the same core-seconds, and dual-write can reach
    # at most slower / (slower + faster) of the slower store's ceiling.
    bounds = {label: round(max(r["cpu_ms_per_doc"], m["cpu_ms_per_doc"]) / (r["cpu_ms_per_doc"] + m["cpu_ms_per_doc"]),
                           3) for label, r, m in zip(("insert", "update"), rdbms, mongo, strict=True)}
    busy = {label: {"rdbms": round(r["median"] * r["cpu_ms_per_doc"] / 1000 / CORES, 2),
                    "ferretdb": round(m["median"] * m["cpu_ms_per_doc"] / 1000 / CORES, 2),
                    "dual_write": round(d["median"] * d["cpu_ms_per_doc"] / 1000 / CORES, 2)}
            for label, r, m, d in zip(("insert", "update"), rdbms, mongo, both, strict=True)}
    print(f"  dual-write / slower store's ceiling: {ratios}; shared-core bound: {bounds}; cores busy: {busy}",
          flush=True)
    return {"documents": DOCS, "batch": BATCH, "chunk": CHUNK, "rdbms": rdbms, "ferretdb": mongo, "dual_write": both,
            "ratio_to_slower": ratios, "shared_core_bound": bounds, "cores_busy": busy}


if __name__ == "__main__":
    run_all(dict(os.environ))
