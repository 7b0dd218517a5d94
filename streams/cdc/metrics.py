"""What a CDC source reports beside the runtime's metrics: the log the server retains for it, and the position
it confirmed, the rows its initial snapshot read (labelled by stream, app and instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from streams.runtime.metrics import LABELS

_families: dict[int, tuple[Gauge, Gauge, Counter]] = {}


class CdcMetrics:
    def __init__(self, registry: CollectorRegistry, stream: str, app: str, instance: int) -> None:
        key = id(registry)
        if key not in _families:
            _families[key] = (
                Gauge("tuneflow_cdc_retained_wal_bytes", "Bytes of log the database keeps for this source's slot",
                      LABELS, registry=registry),
                Gauge("tuneflow_cdc_confirmed_position", "Log position confirmed to the database (LSN)", LABELS,
                      registry=registry),
                Counter("tuneflow_cdc_snapshot_rows_total", "Rows read by the initial snapshot", LABELS,
                        registry=registry),
            )
        retained, confirmed, snapshot_rows = _families[key]
        labels = (stream, app, str(instance))
        self.retained_wal_bytes = retained.labels(*labels)
        self.confirmed_position = confirmed.labels(*labels)
        self.snapshot_rows = snapshot_rows.labels(*labels)
