"""The demo's live path in this process: one stream on the memory binder, and the switch that routes it."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from types import TracebackType
from typing import Any

import httpx

from streams.binders.factory import create_binder
from streams.dsl import parse
from streams.errors import ServiceUnavailableError
from streams.migration.gate import NONE_DECLARED, Gate, repair_topics
from streams.migration.phases import Phase
from streams.migration.switch import Move, SwitchController
from streams.migration.switch_bus import StateSwitchBus
from streams.migration.switch_store import SwitchStore
from streams.migration.verify_runs import clean_verify_of_migration
from streams.platform.run import EmbeddedRun
from streams.registry import Registry
from streams.state import open_state

DRAIN_TIMEOUT_S = 120.0


class DemoStack:
    def __init__(self, stream: str, migration: str, definition: str) -> None:
        self.stream, self.migration = stream, migration
        self.state = open_state()
        self.binder = create_binder("memory")
        self.run = EmbeddedRun(name=stream, definition=definition, binder=self.binder, registry=Registry(self.state),
                               batch_size=500)
        store = SwitchStore(self.state)
        store.ensure(migration)
        store.set_catch_up(migration, "none")
        self.controller = SwitchController(store, StateSwitchBus(store))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> DemoStack:
        self.run.start()
        self.controller.gate = Gate(self.binder, repair_topics([parse(self.stream, self.run.canonical)],
                                                               self.migration),
                                    NONE_DECLARED, max_lag=0, max_verify_age=timedelta(minutes=10),
                                    latest_clean_verify=lambda name: clean_verify_of_migration(self.state, name))
        self._thread = threading.Thread(target=self._wait, name="tuneflow-demo-stream", daemon=True)
        self._thread.start()
        return self

    def _wait(self) -> None:
        try:
            self.run.wait(self._stop)
        except BaseException as exc:  # shown by the next call that needs the stream
            self._error = exc

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
        self.state.close()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        failed = self.run.deployer.failures()
        if failed:
            assert failed[0].error is not None
            raise failed[0].error

    def wait_ready(self, url: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check()
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise ServiceUnavailableError(f"the demo's http source did not get ready at {url} in {timeout_s:g}s")

    def drain(self) -> None:
        """Until every record sent so far is written by the sink and no shadow write is owed."""
        inputs = [f"{self.stream}.http", f"{self.stream}.normalize"]
        repairs = [topic for repair in repair_topics([parse(self.stream, self.run.canonical)], self.migration)
                   for topic in repair.topics]
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check()
            if self.binder.group_lag(self.stream, inputs) == 0 and all(
                    self.binder.group_lag(topic, [topic]) == 0 for topic in repairs):
                return
            time.sleep(0.1)
        raise ServiceUnavailableError(f"the demo's stream did not drain in {DRAIN_TIMEOUT_S:g}s")

    def move(self, target: Phase) -> Move:
        self._check()
        return self.controller.move(self.migration, target, timeout_s=10.0, reason="the demo")

    def summary(self) -> dict[str, Any]:
        samples = {}
        for metric in self.run.deployer.registry.collect():
            for sample in metric.samples:
                if sample.name in ("tuneflow_reads_total", "tuneflow_shadow_reads_total"):
                    label = sample.labels.get("store") or sample.labels.get("result")
                    samples[(sample.name, label)] = int(sample.value)
        reads = ", ".join(f"{samples.get(('tuneflow_reads_total', store), 0)} from the {store} store"
                          for store in ("rdbms", "mongo"))
        shadow = f"{samples.get(('tuneflow_shadow_reads_total', 'match'), 0)} matched, " \
                 f"{samples.get(('tuneflow_shadow_reads_total', 'mismatch'), 0)} differed"
        return {"reads": reads, "shadow": shadow}
