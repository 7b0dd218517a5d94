"""The dual-write's own series: the repair backlog, and shadow writes that failed and were repaired."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from streams.runtime.metrics import LABELS

_families: dict[int, tuple[Gauge, Counter, Counter]] = {}


class ShadowMetrics:
    def __init__(self, registry: CollectorRegistry, stream: str, app: str, instance: int) -> None:
        key = id(registry)
        if key not in _families:
            _families[key] = (
                Gauge("tuneflow_shadow_backlog", "Records in the repair topic not yet written to their store",
                      LABELS, registry=registry),
                Counter("tuneflow_shadow_failures_total", "Shadow writes that failed and went to the repair topic",
                        LABELS, registry=registry),
                Counter("tuneflow_shadow_repairs_total", "Records of the repair topic written to their store",
                        LABELS, registry=registry),
            )
        backlog, failures, repairs = _families[key]
        labels = (stream, app, str(instance))
        self.backlog = backlog.labels(*labels)
        self.shadow_failures = failures.labels(*labels)
        self.repairs = repairs.labels(*labels)
