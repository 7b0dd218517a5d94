"""The repair loop: re-applies what the outbox holds to the store it is owed to, until that store takes it.

It runs beside the dual-write sink in the same app, consuming `<stream>.<label>.repair` in the group of the same
name; offsets move only after the store confirmed the write, so a crash repairs again (the writes are
version-guarded, so a change older than what the store holds is dropped as stale, never written over it). A
document the store refuses for its content can never be repaired: it goes to the app's DLQ with the reasons.
`tuneflow_shadow_backlog` is the group's lag on the repair topic: records owed and not yet written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from streams.binders.base import Binder, InputBinding, OutputBinding
from streams.errors import RecordError, TransientError, TuneflowError
from streams.migration.dual_write import REPAIR_STORE_HEADER, Pending, rejected_failures
from streams.migration.phases import StoreRole
from streams.migration.shadow_metrics import ShadowMetrics
from streams.records import ERROR_HEADER, ERROR_REASONS_HEADER, ORIGIN_APP_HEADER, Record
from streams.runtime.contract import Failure
from streams.runtime.retry import RetryPolicy
from streams.stores.base import Change, DocumentStore

BACKLOG_EVERY_S = 1.0
POLL_RECORDS = 500


class RepairLoop:
    def __init__(self, binder: Binder, topic: str, dlq_topic: str, instance: int, collection: str,
                 open_stores: Callable[[], Mapping[StoreRole, DocumentStore]], to_change: Callable[[Record], Change],
                 metrics: ShadowMetrics, log: Any, retry: RetryPolicy | None = None) -> None:
        self.binder = binder
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.instance = instance
        self.collection = collection
        self.open_stores = open_stores
        self.to_change = to_change
        self.metrics = metrics
        self.log = log
        self.retry = retry or RetryPolicy(initial_s=0.5, max_delay_s=5.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tuneflow-repair", daemon=True)
        self._stores: Mapping[StoreRole, DocumentStore] | None = None
        self._last_backlog = 0.0
        self.error: BaseException | None = None

    def start(self) -> None:
        self.binder.ensure_topics([self.topic])
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    # -- the loop --------------------------------------------------------------------------------------------

    def _run(self) -> None:
        source = self.binder.input([self.topic], self.topic, f"repair-{self.instance}")
        output = self.binder.output()
        try:
            while not self._stop.is_set():
                self._report_backlog()
                batch = source.poll(POLL_RECORDS, 0.5)
                if batch and self._repaired(batch, source, output):
                    marks = {(r.topic, r.partition): r for r in batch}
                    source.commit(list(marks.values()))
                    self.metrics.repairs.inc(len(batch))
                    self._report_backlog(force=True)
        except BaseException as exc:  # the app's health must show a dead repair loop, not hide it
            self.error = exc
            self.log.exception("the repair loop stopped")
        finally:
            for closer in (source.close, output.close, self._close_stores):
                try:
                    closer()
                except Exception:
                    self.log.exception("error while closing the repair loop")

    def _repaired(self, batch: Sequence[Record], source: InputBinding, output: OutputBinding) -> bool:
        """Apply the batch, retrying until the stores take it; False when stopped first (nothing committed)."""
        attempt = 0
        delay_of = self.retry.delays()
        while not self._stop.is_set():
            try:
                failures = self._apply(batch)
                if failures:
                    output.send(self.dlq_topic, [self._dead_letter(failure) for failure in failures])
                    output.flush()
                return True
            except TransientError as exc:
                delay = delay_of(attempt)
                self.log.warning("repair failed (attempt %d), retrying in %.1fs: %s", attempt + 1, delay, exc)
                attempt += 1
                deadline = time.monotonic() + delay
                while not self._stop.is_set() and time.monotonic() < deadline:
                    source.keepalive()
                    self._report_backlog()
                    self._stop.wait(min(0.5, max(0.0, deadline - time.monotonic())))
        return False

    def _apply(self, batch: Sequence[Record]) -> list[Failure]:
        stores = self._open()
        failures: list[Failure] = []
        owed: dict[StoreRole, list[Pending]] = {}
        for record in batch:
            try:
                role = StoreRole((record.headers.get(REPAIR_STORE_HEADER) or b"").decode())
                owed.setdefault(role, []).append(Pending(record, self.to_change(record)))
            except ValueError as exc:
                failures.append(Failure(record, [{"field": "", "message": f"cannot repair: {exc}"}], "unwritable"))
        for role, items in owed.items():
            failures += self._apply_to(stores[role], role, items)
        return failures

    def _apply_to(self, store: DocumentStore, role: StoreRole, items: list[Pending]) -> list[Failure]:
        try:
            result = store.apply(self.collection, [item.change for item in items])
        except RecordError as exc:
            if len(items) == 1:
                return [Failure(items[0].record, exc.reasons, "shadow-unwritable")]
            # The store refused some document of the batch without saying which: one at a time finds it.
            return [failure for item in items for failure in self._apply_to(store, role, [item])]
        except TransientError:
            raise
        except TuneflowError as exc:  # the store is owed these changes: keep trying, whatever it says
            raise TransientError(str(exc)) from exc
        return rejected_failures(items, result, "shadow-unwritable", role.value)

    def _open(self) -> Mapping[StoreRole, DocumentStore]:
        if self._stores is None:
            self._stores = self.open_stores()
        return self._stores

    def _close_stores(self) -> None:
        if self._stores is not None:
            for store in self._stores.values():
                store.close()

    def _report_backlog(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_backlog < BACKLOG_EVERY_S:
            return
        self._last_backlog = now
        try:
            self.metrics.backlog.set(self.binder.group_lag(self.topic, [self.topic]))
        except TransientError as exc:
            self.log.debug("repair backlog unavailable: %s", exc)

    def _dead_letter(self, failure: Failure) -> Record:
        headers = {**failure.record.headers, ERROR_HEADER: failure.kind.encode(),
                   ERROR_REASONS_HEADER: orjson.dumps(failure.reasons), ORIGIN_APP_HEADER: self.topic.encode()}
        return Record(failure.record.key, failure.record.value, headers)
