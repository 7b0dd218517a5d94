"""`cdc-mysql` source: every row change of the chosen MySQL 8 / MariaDB tables, live, from the row binlog.

One record per change, `{op: c|u|d|t, table, key, before, after, source: {file, pos, gtid, txid, commit_ts}}` (what
each field holds and how types come out is in `streams/cdc/binlog.py`), keyed by table + primary key, with headers
`tf-version` (file sequence × 2^32 + the transaction's binlog position), `tf-tx-id`, `tf-tx-seq` and `tf-tx-last`.
The binlog position (file + offset, with the GTID beside it) is kept in the topic `<stream>.<label>.offsets` and moves
only past transactions whose every change Kafka acknowledged, so a restart, a `kill -9` or a redeploy resumes where
the durable output ends: nothing lost, and duplicates only of what was not yet recorded as done.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from sources.base import AppOptions, SourceApp
from streams.catalog.legacy import metadata
from streams.cdc.mysql import CaptureSettings, MysqlCapture, default_server_id
from streams.cdc.positions import PositionStore, positions_topic
from streams.records import Record


class CdcMysqlOptions(AppOptions):
    url: str = Field(min_length=1, description="The database: mysql://user:password@host:3306/db (or mariadb://).")
    tables: str = Field(default=",".join(metadata.tables), description="Tables of the URL's database to follow, "
                                                                        "comma-separated [default: the legacy "
                                                                        "catalog's].")
    server_id: int | None = Field(default=None, ge=1, le=2**32 - 1, description="The replica id this source uses "
                                  "with the server, unique among its replicas [default: derived from the stream, "
                                  "app and instance].")


class CdcMysqlSource(SourceApp[CdcMysqlOptions]):
    """Change-data-capture from MySQL or MariaDB with the row binlog (`mysql-replication`)."""

    name = "cdc-mysql"
    options_model = CdcMysqlOptions

    def setup(self) -> None:
        options, ctx = self.options, self.context
        settings = CaptureSettings(
            url=options.url, tables=[t.strip() for t in options.tables.split(",") if t.strip()],
            server_id=options.server_id or default_server_id(ctx.stream, ctx.label, ctx.instance))
        positions = PositionStore(ctx.binder, positions_topic(ctx.stream, ctx.label))
        self._capture = MysqlCapture(settings, positions, ctx.log)
        self._capture.start()

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        return self._capture.poll(max_records, timeout_s)

    def ack(self, records: Sequence[Record]) -> None:
        self._capture.ack(len(records))

    def close(self) -> None:
        capture = getattr(self, "_capture", None)
        if capture is not None:
            capture.close()
