"""What a CDC source reports beside the runtime's metrics (labelled by stream, app and instance): the log the server
retains for it and the position it confirmed, and how far its initial snapshot is (rows read, rate, time left)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from streams.runtime.metrics import LABELS

_families: dict[int, tuple[Gauge, Gauge, Counter, Gauge, Gauge, Gauge]] = {}


class CdcMetrics:
    def __init__(self, registry: CollectorRegistry, stream: str, app: str, instance: int) -> None:
        key = id(registry)
        if key not in _families:
            _families[key] = (
                Gauge("tuneflow_cdc_retained_wal_bytes", "Bytes of log the database keeps for this source's slot",
                      LABELS, registry=registry),
                Gauge("tuneflow_cdc_confirmed_position", "Log position whose changes are all durable, as the source "
                      "last stored it (PostgreSQL: the LSN confirmed to the slot; MySQL/MariaDB: the binlog file's "
                      "sequence × 2^32 + offset, as in tf-version)", LABELS, registry=registry),
                Counter("tuneflow_cdc_snapshot_rows_total", "Rows read by the initial snapshot", LABELS,
                        registry=registry),
                Gauge("tuneflow_cdc_snapshot_rows_expected", "Rows the initial snapshot expects to read in this run "
                      "(the database's estimate)", LABELS, registry=registry),
                Gauge("tuneflow_cdc_snapshot_rows_per_second", "Rows per second the initial snapshot reads, since "
                      "it started in this run", LABELS, registry=registry),
                Gauge("tuneflow_cdc_snapshot_eta_seconds", "Seconds the initial snapshot still needs at its rate "
                      "(0 once read)", LABELS, registry=registry),
            )
        retained, confirmed, snapshot_rows, expected, rate, eta = _families[key]
        labels = (stream, app, str(instance))
        self.retained_wal_bytes = retained.labels(*labels)
        self.confirmed_position = confirmed.labels(*labels)
        self.snapshot_rows = snapshot_rows.labels(*labels)
        self.snapshot_rows_expected = expected.labels(*labels)
        self.snapshot_rate = rate.labels(*labels)
        self.snapshot_eta_seconds = eta.labels(*labels)
