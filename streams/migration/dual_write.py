"""Dual writes: each batch to the primary store first, then to the shadow; a shadow failure goes to a durable outbox.

The phase view says, batch by batch, which store is primary and which (if any) is shadow. A batch is cut in chunks
so the shadow writes chunk k while the primary writes chunk k+1; the batch is done when both have written every
chunk or the shadow's share is durable in the repair topic (`<stream>.<label>.repair`, acknowledged by every
replica). A primary failure is raised (the harness retries the batch; every write is version-guarded, so writing a
chunk again is harmless); a document the primary refuses for its content is a failure for the DLQ, and is not
written to the shadow either. After a shadow failure the shadow is left alone for `shadow_pause_s` (its writes go
straight to the outbox), so an outage costs the primary's throughput one failed call, not one per chunk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from streams.binders.base import OutputBinding
from streams.migration.phases import PhaseView, StoreRole, routing
from streams.migration.shadow_metrics import ShadowMetrics
from streams.records import Record
from streams.runtime.contract import Failure
from streams.stores.base import ApplyResult, Change, DocumentStore

REPAIR_STORE_HEADER = "tf-repair-store"
REPAIR_REASON_HEADER = "tf-repair-reason"
OUTBOX_FLUSH_S = 30.0


def repair_topic(stream: str, label: str) -> str:
    """The outbox of app `label` in `stream`; its repair loop consumes it in the group of the same name."""
    return f"{stream}.{label}.repair"


@dataclass(frozen=True, slots=True)
class Pending:
    """A record and the guarded write it asks for."""

    record: Record
    change: Change


def rejected_failures(items: Sequence[Pending], result: ApplyResult, kind: str, store: str) -> list[Failure]:
    """The records whose documents `store` refused for their content, with its reasons."""
    if not result.rejected:
        return []
    return [Failure(item.record, [{**reason, "message": f"{store}: {reason['message']}"}
                                  for reason in result.rejected[item.change.key]], kind=kind)
            for item in items if item.change.key in result.rejected]


def _role_of(stores: Mapping[StoreRole, DocumentStore], store: DocumentStore) -> str:
    return next((role.value for role, candidate in stores.items() if candidate is store), "store")


class Outbox:
    """The repair topic: records whose shadow write failed, with the store they are owed to."""

    def __init__(self, output: OutputBinding, topic: str) -> None:
        self.output = output
        self.topic = topic

    def put(self, items: Sequence[Pending], store: StoreRole, reason: str) -> None:
        """Send and wait until every replica has them (TransientError when not: the batch is written again)."""
        records = [Record(item.record.key, item.record.value,
                          {**item.record.headers, REPAIR_STORE_HEADER: store.value.encode(),
                           REPAIR_REASON_HEADER: reason[:500].encode()}) for item in items]
        self.output.send(self.topic, records)
        self.output.flush(OUTBOX_FLUSH_S)


class DualWriter:
    def __init__(self, stores: Mapping[StoreRole, DocumentStore], collection: str, view: PhaseView, outbox: Outbox,
                 metrics: ShadowMetrics, log: Any, chunk_size: int = 100, shadow_pause_s: float = 2.0) -> None:
        self.stores = stores
        self.collection = collection
        self.view = view
        self.outbox = outbox
        self.metrics = metrics
        self.log = log
        self.chunk_size = chunk_size
        self.shadow_pause_s = shadow_pause_s
        self._shadow_pool = ThreadPoolExecutor(1, thread_name_prefix="tuneflow-shadow")
        self._shadow_down_until = 0.0
        self._lock = threading.Lock()

    def write(self, items: Sequence[Pending]) -> list[Failure]:
        """Write a batch as the current phase routes it; returns the records refused for their content."""
        with self._lock:
            return self._write(items)

    def quiesce(self) -> None:
        """Return once no batch is being written: one started under an older phase has reached both stores (or
        the outbox)."""
        with self._lock:
            pass

    def _write(self, items: Sequence[Pending]) -> list[Failure]:
        route = routing(self.view.current().phase)
        primary = self.stores[route.primary]
        shadow = None if route.shadow is None else self.stores[route.shadow]
        # The primary refuses what it cannot hold itself, and nothing it refuses reaches the shadow; what the
        # shadow could not hold is found before the primary writes it.
        failures, items = self._misfits(items, [] if shadow is None else [shadow])
        in_flight: list[tuple[list[Pending], Future[ApplyResult] | None]] = []
        try:
            for start in range(0, len(items), self.chunk_size):
                chunk = list(items[start:start + self.chunk_size])
                result = primary.apply(self.collection, [item.change for item in chunk])
                failures += rejected_failures(chunk, result, "unwritable", route.primary.value)
                if shadow is None:
                    continue
                accepted = [item for item in chunk if item.change.key not in result.rejected]
                if accepted:
                    in_flight.append((accepted, self._shadow_write(shadow, accepted)))
        finally:
            owed, reason = self._settle(in_flight, route.shadow, failures)
        if owed:
            assert route.shadow is not None
            self.outbox.put(owed, route.shadow, reason)
            self.metrics.shadow_failures.inc(len(owed))
        return failures

    def _misfits(self, items: Sequence[Pending], stores: list[DocumentStore]) -> tuple[list[Failure], list[Pending]]:
        """Documents the shadow cannot hold (a title too long for its column) reach neither store: the stores
        would disagree, and a rollback would lose them."""
        failures: list[Failure] = []
        for store in stores:
            check = getattr(store, "misfits", None)
            if check is None:
                continue
            refused = check(self.collection, [item.change for item in items])
            if refused:
                result = ApplyResult(applied=0, stale=0, rejected=refused)
                failures += rejected_failures(items, result, "unwritable", _role_of(self.stores, store))
                items = [item for item in items if item.change.key not in refused]
        return failures, list(items)

    def _shadow_write(self, shadow: DocumentStore, items: list[Pending]) -> Future[ApplyResult] | None:
        """The shadow's write of a chunk, in the background; None while the shadow is paused after a failure."""
        if time.monotonic() < self._shadow_down_until:
            return None
        return self._shadow_pool.submit(shadow.apply, self.collection, [item.change for item in items])

    def _settle(self, in_flight: list[tuple[list[Pending], Future[ApplyResult] | None]], store: StoreRole | None,
                failures: list[Failure]) -> tuple[list[Pending], str]:
        """Wait for the shadow's writes: what it refused for content joins `failures`; what failed is owed."""
        owed: list[Pending] = []
        reason = f"{store.value if store else 'shadow'} paused after a failed write"
        for items, future in in_flight:
            if future is None:
                owed += items
                continue
            try:
                result = future.result()
            except Exception as exc:  # anything: the outbox keeps the change until the store takes it
                reason = f"{type(exc).__name__}: {exc}"
                self._shadow_down_until = time.monotonic() + self.shadow_pause_s
                self.log.warning("shadow write to %s failed, %d changes go to the repair topic: %s",
                                 store.value if store else "?", len(items), reason)
                owed += items
                continue
            failures += rejected_failures(items, result, "shadow-unwritable", store.value if store else "shadow")
        return owed, reason

    def close(self) -> None:
        self._shadow_pool.shutdown(wait=True)
