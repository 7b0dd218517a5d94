"""The embedded deployer: every app instance of a manifest as a thread of this process, on one binder.

What `tuneflow run` and `tuneflow demo` use. A stream whose sources are bounded (a snapshot) is `done` once every
source is exhausted and every app has committed all its input; an unbounded one runs until stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from streams.binders.base import Binder
from streams.runtime.contract import SourceApp
from streams.runtime.health import HealthServer
from streams.runtime.launch import Instance, build_instance
from streams.runtime.runner import RunSpec

STOP_TIMEOUT_S = 30.0


@dataclass
class EmbeddedInstance:
    label: str
    index: int
    kind: str
    inputs: list[str]
    instance: Instance
    thread: threading.Thread | None = None
    error: BaseException | None = None

    @property
    def name(self) -> str:
        return f"{self.label}-{self.index}"


@dataclass
class AppTotals:
    label: str
    kind: str
    records_in: int = 0
    records_out: int = 0
    dead_letters: int = 0
    instances: int = 0


@dataclass
class EmbeddedDeployer:
    binder: Binder
    batch_size: int = 500
    batch_timeout_s: float = 0.2
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    instances: list[EmbeddedInstance] = field(default_factory=list)
    _stream: str = ""
    _http: HealthServer | None = None

    def start(self, manifest: dict[str, Any], port: int | None = None) -> None:
        """Build every instance (options are checked before any thread starts), then start sinks first."""
        self._stream = manifest["stream"]
        partitions = max(app["count"] for app in manifest["apps"])
        self.binder.ensure_topics([app["output"] for app in manifest["apps"] if app["output"]], partitions)
        for app in manifest["apps"]:
            for index in range(app["count"]):
                spec = RunSpec(stream=self._stream, label=app["label"], instance=index, inputs=app["inputs"],
                               output=app["output"], group=app.get("group"), batch_size=self.batch_size,
                               batch_timeout_s=self.batch_timeout_s)
                instance = build_instance(app["app"], app["kind"], app["options"], spec, self.binder,
                                          registry=self.registry, uri=app["uri"])
                self.instances.append(EmbeddedInstance(app["label"], index, app["kind"], app["inputs"], instance))
        if port is not None:
            self._http = HealthServer(self.registry, alive=lambda: not self.failures(),
                                      ready=lambda: all(i.instance.runner.metrics.is_ready() for i in self.instances),
                                      port=port)
            self._http.start()
        for embedded in reversed(self.instances):
            embedded.thread = threading.Thread(target=self._run, args=(embedded,), name=embedded.name, daemon=True)
            embedded.thread.start()

    @property
    def port(self) -> int | None:
        return self._http.port if self._http is not None else None

    @staticmethod
    def _run(embedded: EmbeddedInstance) -> None:
        try:
            embedded.instance.runner.run()
        except BaseException as exc:  # reported by failures(); the other instances are stopped by the caller
            embedded.error = exc

    def failures(self) -> list[EmbeddedInstance]:
        return [i for i in self.instances if i.error is not None]

    def bounded(self) -> bool:
        """Every source of the stream is a snapshot that ends (its class says when it is `exhausted`)."""
        sources = [type(i.instance.runner.app) for i in self.instances if i.kind == "source"]
        return bool(sources) and all(source.exhausted is not SourceApp.exhausted for source in sources)

    def done(self) -> bool:
        """Every source exhausted and every input of the other apps committed to its end. (A source's batch is
        durable before the runner polls it again, so an exhausted source has nothing in flight.)"""
        sources = [i.instance.runner.app for i in self.instances if i.kind == "source"]
        if not sources or not all(isinstance(s, SourceApp) and s.exhausted for s in sources):
            return False
        inputs = sorted({t for i in self.instances if i.kind != "source" for t in i.inputs})
        return not inputs or self.binder.group_lag(self._stream, inputs) == 0

    def totals(self) -> list[AppTotals]:
        """Counts per app label (summed over its instances), in stream order."""
        totals: dict[str, AppTotals] = {}
        for embedded in self.instances:
            total = totals.setdefault(embedded.label, AppTotals(embedded.label, embedded.kind))
            counts = embedded.instance.runner.metrics.counts()
            total.records_in += counts["in"]
            total.records_out += counts["out"]
            total.dead_letters += counts["dlq"]
            total.instances += 1
        return list(totals.values())

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
        """Stop sources first, then each app downstream, each draining what it holds; returns the names of
        instances that did not stop in time."""
        late = []
        for embedded in self.instances:
            embedded.instance.runner.stop()
            if embedded.thread is not None:
                embedded.thread.join(timeout_s)
                if embedded.thread.is_alive():
                    late.append(embedded.name)
        if self._http is not None:
            self._http.close()
        return late

    def wait(self, stop: threading.Event, poll_s: float = 0.2, on_tick: Callable[[], None] | None = None) -> None:
        """Until `stop` is set, an instance fails or a bounded stream is done; `on_tick()` after each check."""
        bounded = self.bounded()
        while not stop.is_set() and not self.failures() and not (bounded and self.done()):
            if on_tick is not None:
                on_tick()
            stop.wait(poll_s)
