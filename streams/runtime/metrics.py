"""The metrics every app exposes (names in ARCHITECTURE.md), labelled by stream, app and instance."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from streams.runtime.memory import rss_mb

LABELS = ("stream", "app", "instance")
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True)
class _Families:
    records_in: Counter
    records_out: Counter
    records_failed: Counter
    dlq_records: Counter
    retries: Counter
    batch_seconds: Histogram
    sink_write_seconds: Histogram
    consumer_lag: Gauge
    ready: Gauge
    rss_bytes: Gauge
    memory_limit_bytes: Gauge
    switch_phase: Gauge
    switch_epoch: Gauge


_families: dict[int, _Families] = {}


def _families_of(registry: CollectorRegistry) -> _Families:
    key = id(registry)
    if key not in _families:
        _families[key] = _Families(
            records_in=Counter("tuneflow_records_in_total", "Records read by the app", LABELS, registry=registry),
            records_out=Counter("tuneflow_records_out_total", "Records emitted or written", LABELS,
                                registry=registry),
            records_failed=Counter("tuneflow_records_failed_total", "Records that failed, by reason",
                                   (*LABELS, "reason"), registry=registry),
            dlq_records=Counter("tuneflow_dlq_records_total", "Records sent to the dead-letter topic", LABELS,
                                registry=registry),
            retries=Counter("tuneflow_retries_total", "Retries after transient errors, by operation",
                            (*LABELS, "operation"), registry=registry),
            batch_seconds=Histogram("tuneflow_batch_seconds", "Time to handle one batch end to end", LABELS,
                                    buckets=_BUCKETS, registry=registry),
            sink_write_seconds=Histogram("tuneflow_sink_write_seconds", "Time of one sink batch write", LABELS,
                                         buckets=_BUCKETS, registry=registry),
            consumer_lag=Gauge("tuneflow_consumer_lag", "Records behind the end of each input partition",
                               (*LABELS, "topic", "partition"), registry=registry),
            ready=Gauge("tuneflow_app_ready", "1 while the app is processing normally", LABELS,
                        registry=registry),
            rss_bytes=Gauge("tuneflow_memory_rss_bytes", "Resident memory of the instance's process", LABELS,
                            registry=registry),
            memory_limit_bytes=Gauge("tuneflow_memory_limit_bytes",
                                     "RSS past which the instance drains and exits (deployer.<app>.memory)", LABELS,
                                     registry=registry),
            switch_phase=Gauge("tuneflow_switch_phase", "Migration switch phase the instance applies: 0 legacy, "
                               "1 dual-rdbms-primary, 2 dual-mongo-primary, 3 mongo-only", (*LABELS, "migration"),
                               registry=registry),
            switch_epoch=Gauge("tuneflow_switch_epoch", "Epoch of the migration switch state the instance applies",
                               (*LABELS, "migration"), registry=registry),
        )
    return _families[key]


class AppMetrics:
    def __init__(self, registry: CollectorRegistry, stream: str, app: str, instance: int) -> None:
        self.registry = registry
        self._f = _families_of(registry)
        self._labels = (stream, app, str(instance))
        self.records_in = self._f.records_in.labels(*self._labels)
        self.records_out = self._f.records_out.labels(*self._labels)
        self.dlq_records = self._f.dlq_records.labels(*self._labels)
        self.batch_seconds = self._f.batch_seconds.labels(*self._labels)
        self.sink_write_seconds = self._f.sink_write_seconds.labels(*self._labels)
        self.ready = self._f.ready.labels(*self._labels)

    def expect_retries(self, operations: tuple[str, ...]) -> None:
        """Export each operation's retry counter at 0 from the start: a rate of 0, not a series missing until the
        first retry (dashboards and alerts then tell "no retries" from "no data")."""
        for operation in operations:
            self._f.retries.labels(*self._labels, operation)

    def watch_memory(self, limit_mb: int | None) -> None:
        """RSS read at every scrape; the limit, when the deployer set one."""
        self._f.rss_bytes.labels(*self._labels).set_function(lambda: rss_mb() * 2**20)
        if limit_mb is not None:
            self._f.memory_limit_bytes.labels(*self._labels).set(limit_mb * 2**20)

    def is_ready(self) -> bool:
        return bool(self.ready._value.get())

    def counts(self) -> dict[str, int]:
        """This instance's record counters so far: in, out, and sent to the DLQ."""
        return {"in": int(self.records_in._value.get()), "out": int(self.records_out._value.get()),
                "dlq": int(self.dlq_records._value.get())}

    def failed(self, reason: str, count: int = 1) -> None:
        self._f.records_failed.labels(*self._labels, reason).inc(count)

    def retried(self, operation: str) -> None:
        self._f.retries.labels(*self._labels, operation).inc()

    def switch_applied(self, migration: str, phase_number: int, epoch: int) -> None:
        self._f.switch_phase.labels(*self._labels, migration).set(phase_number)
        self._f.switch_epoch.labels(*self._labels, migration).set(epoch)

    def lag(self, topic: str, partition: int, value: int) -> None:
        self._f.consumer_lag.labels(*self._labels, topic, str(partition)).set(value)


def metric_sum(metrics_text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples in a /metrics page (Prometheus text), over the series carrying `labels`."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
