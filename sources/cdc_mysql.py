"""`cdc-mysql` source: every row change of the chosen MySQL 8 / MariaDB tables, live, from the row binlog.

One record per change, `{op: c|u|d|t|r, table, key, before, after, source: {file, pos, gtid, txid, commit_ts}}` (what
each field holds and how types come out is in `streams/cdc/binlog.py`), keyed by table + primary key, with headers
`tf-version` (file sequence × 2^32 + the transaction's binlog position), `tf-tx-id`, `tf-tx-seq` and `tf-tx-last`.
The binlog position (file + offset, with the GTID beside it) is kept in the topic `<stream>.<label>.offsets` and moves
only past transactions whose every change Kafka acknowledged, so a restart, a `kill -9` or a redeploy resumes where
the durable output ends: nothing lost, and duplicates only of what was not yet recorded as done.
`--snapshot=initial` first emits every row (`op=r`, versioned with the binlog position of the consistent snapshot it
was read in, so version-guarded sinks converge whatever the interleaving with live changes), with its progress in
`<stream>.<label>.snapshot`; streaming then starts from that position.
"""

from __future__ import annotations

from pydantic import Field

from sources.cdc_base import CdcSource, SnapshotOptions
from streams.catalog.legacy import metadata
from streams.cdc.metrics import CdcMetrics
from streams.cdc.mysql import CaptureSettings, MysqlCapture, default_server_id
from streams.cdc.positions import PositionStore, positions_topic
from streams.cdc.progress import SnapshotProgressStore, progress_topic


class CdcMysqlOptions(SnapshotOptions):
    url: str = Field(min_length=1, description="The database: mysql://user:password@host:3306/db (or mariadb://).")
    tables: str = Field(default=",".join(metadata.tables), description="Tables of the URL's database to follow, "
                                                                        "comma-separated [default: the legacy "
                                                                        "catalog's].")
    server_id: int | None = Field(default=None, ge=1, le=2**32 - 1, description="The replica id this source uses "
                                  "with the server, unique among its replicas [default: derived from the stream, "
                                  "app and instance].")


class CdcMysqlSource(CdcSource[CdcMysqlOptions]):
    """Change-data-capture from MySQL or MariaDB with the row binlog (`mysql-replication`)."""

    name = "cdc-mysql"
    options_model = CdcMysqlOptions

    def setup(self) -> None:
        options, ctx = self.options, self.context
        settings = CaptureSettings(
            url=options.url, tables=[t.strip() for t in options.tables.split(",") if t.strip()],
            server_id=options.server_id or default_server_id(ctx.stream, ctx.label, ctx.instance),
            snapshot=options.snapshot, snapshot_chunk=options.snapshot_chunk,
            snapshot_parallel=options.snapshot_parallel)
        positions = PositionStore(ctx.binder, positions_topic(ctx.stream, ctx.label))
        metrics = CdcMetrics(ctx.metrics.registry, ctx.stream, ctx.label, ctx.instance)
        progress = SnapshotProgressStore(ctx.binder, progress_topic(ctx.stream, ctx.label)) \
            if settings.snapshots else None
        capture = MysqlCapture(settings, positions, metrics, ctx.log, progress)
        self.capture = capture
        capture.start()
