"""The `http` source's own metrics, beside the runtime's: requests by route and status, records accepted and
rejected, request latency. Labels never carry a token, a secret or a raw path (unknown paths count as `unmatched`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from streams.runtime.metrics import LABELS

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
UNMATCHED = "unmatched"

_families: dict[int, tuple[Counter, Counter, Counter, Histogram]] = {}


def _families_of(registry: CollectorRegistry) -> tuple[Counter, Counter, Counter, Histogram]:
    key = id(registry)
    if key not in _families:
        _families[key] = (
            Counter("tuneflow_http_requests_total", "HTTP requests answered, by route, method and status",
                    (*LABELS, "route", "method", "status"), registry=registry),
            Counter("tuneflow_http_records_accepted_total", "Records accepted over HTTP and acknowledged by Kafka",
                    LABELS, registry=registry),
            Counter("tuneflow_http_records_rejected_total", "Records rejected over HTTP, by reason",
                    (*LABELS, "reason"), registry=registry),
            Histogram("tuneflow_http_request_seconds", "Time from a request's headers to its answer, by route",
                      (*LABELS, "route"), buckets=_BUCKETS, registry=registry),
        )
    return _families[key]


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry, stream: str, app: str, instance: int) -> None:
        self._labels = (stream, app, str(instance))
        self._requests, accepted, self._rejected, self._seconds = _families_of(registry)
        self.accepted = accepted.labels(*self._labels)

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        self._requests.labels(*self._labels, route, method, str(status)).inc()
        self._seconds.labels(*self._labels, route).observe(seconds)

    def rejected(self, reason: str, count: int = 1) -> None:
        self._rejected.labels(*self._labels, reason).inc(count)
