"""Autoscaling on consumer lag: `deployer.<app>.autoscale=MIN..MAX` moves an app between MIN and MAX instances.

Every few seconds the autoscaler reads each autoscaled app's lag (records of its input topics that its consumer
group has not committed) and wants `ceil(lag / autoscale-lag)` instances, within MIN..MAX and never more than its
input topics have partitions (an instance without a partition would idle). A change is made as `stream scale`
makes it — a new release whose history entry names the cause — at most once per app per cool-down, so a burst
scales up at once and the app scales back down only after it has kept up for the cool-down.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from streams.errors import TuneflowError
from streams.platform.service import StreamService

TICK_S = 2.0
log = logging.getLogger("tuneflow.autoscaler")


@dataclass(frozen=True)
class Decision:
    label: str
    before: int
    after: int
    lag: int
    partitions: int

    @property
    def cause(self) -> str:
        return (f"autoscale {self.label} {self.before} → {self.after}: lag {self.lag:,} "
                f"({self.partitions} partitions)")


def wanted(lag: int, partitions: int, policy: dict[str, Any]) -> int:
    """Instances for `lag`: one per `policy['lag']` records, within min..max and the partitions."""
    want = math.ceil(lag / policy["lag"]) if lag > 0 else policy["min"]
    ceiling = min(policy["max"], partitions) if partitions > 0 else policy["max"]
    return max(policy["min"], min(want, ceiling))


class Autoscaler:
    def __init__(self, service: StreamService, name: str, registry: CollectorRegistry) -> None:
        self.service = service
        self.name = name
        self._last_change: dict[str, float] = {}
        labels = ("stream", "app")
        self.instances = Gauge("tuneflow_autoscale_instances", "Instances the app runs now", labels,
                               registry=registry)
        self.desired = Gauge("tuneflow_autoscale_desired_instances", "Instances the lag asks for", labels,
                             registry=registry)
        self.lag = Gauge("tuneflow_autoscale_lag", "Records of the app's inputs not yet committed", labels,
                         registry=registry)
        self.decisions = Counter("tuneflow_autoscale_decisions_total", "Scaling decisions made",
                                 (*labels, "direction"), registry=registry)

    def tick(self, now: float) -> list[Decision]:
        """Look at every autoscaled app once; scale those whose lag asks for it and whose cool-down is over."""
        release = self.service.state.latest_release(self.name)
        if release is None:
            return []
        made = []
        for app in release.manifest["apps"]:
            policy = app.get("autoscale")
            if not policy:
                continue
            lag, partitions = self._measure(app)
            want = wanted(lag, partitions, policy)
            self.instances.labels(self.name, app["label"]).set(app["count"])
            self.desired.labels(self.name, app["label"]).set(want)
            self.lag.labels(self.name, app["label"]).set(lag)
            if want == app["count"] or now - self._last_change.get(app["label"], -math.inf) < policy["cooldown_s"]:
                continue
            decision = Decision(app["label"], app["count"], want, lag, partitions)
            log.info("stream %s: %s", self.name, decision.cause)
            self.service.scale(self.name, app["label"], want, cause=decision.cause)
            self._last_change[app["label"]] = now
            self.decisions.labels(self.name, app["label"], "up" if want > app["count"] else "down").inc()
            self.instances.labels(self.name, app["label"]).set(want)
            made.append(decision)
        return made

    def _measure(self, app: dict[str, Any]) -> tuple[int, int]:
        binder = self.service.open_binder()
        try:
            group = app.get("group") or self.name
            partitions = min((binder.partitions(topic) for topic in app["inputs"]), default=0)
            return binder.group_lag(group, app["inputs"]), partitions
        finally:
            binder.close()


def run(service: StreamService, name: str, port_file: Path | None = None) -> int:
    """Serve the autoscaler's /metrics and tick until SIGTERM or SIGINT."""
    registry = CollectorRegistry()
    scaler = Autoscaler(service, name, registry)
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    if port_file is not None:
        port_file.write_text(str(server.server_port))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("stream %s: autoscaler up, metrics on http://127.0.0.1:%d/metrics", name, server.server_port)
    while not stop.is_set():
        try:
            scaler.tick(time.monotonic())
        except TuneflowError as exc:  # a service down, a deploy in progress: try again next tick
            log.warning("stream %s: no decision this time: %s", name, exc)
        except Exception:  # the state busy, a broker hiccup: the autoscaler must outlive it, so log and go on
            log.exception("stream %s: no decision this time", name)
        stop.wait(TICK_S)
    server.shutdown()
    return 0
