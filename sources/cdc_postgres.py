"""`cdc-postgres` source: every row change of the chosen PostgreSQL tables, live, from a logical replication slot.

One record per change, `{op: c|u|d|t|r, table, key, before, after, source: {lsn, txid, commit_ts}}` (what each field
holds, unchanged TOAST columns included, is in `streams/cdc/changes.py`), keyed by table + primary key, with headers
`tf-version` (the commit LSN), `tf-tx-id`, `tf-tx-seq` and `tf-tx-last`. The slot's position moves only past
transactions whose every change Kafka acknowledged, so a restart or a `kill -9` resumes where the durable output
ends: nothing lost, and duplicates only of what was unconfirmed. The slot outlives the stream: `stream destroy` says
how to drop it, or drops it with `--drop-cdc-slots`.
`--snapshot=initial` first emits every row (`op=r`, versioned with the slot's snapshot LSN, so version-guarded sinks
converge whatever the interleaving with live changes), with its progress in `<stream>.<label>.snapshot`.
"""

from __future__ import annotations

from pydantic import Field

from sources.base import Leftover
from sources.cdc_base import CdcSource, SnapshotOptions
from streams.catalog.legacy import metadata
from streams.cdc.metrics import CdcMetrics
from streams.cdc.pgslot import default_slot_name
from streams.cdc.postgres import CaptureSettings, PostgresCapture, capture_leftovers
from streams.cdc.progress import SnapshotProgressStore, progress_topic


class CdcPostgresOptions(SnapshotOptions):
    url: str = Field(min_length=1, description="The database: postgresql://user@host:5432/db (a password may come "
                                               "from PGPASSWORD or ~/.pgpass instead of the URL).")
    tables: str = Field(default=",".join(metadata.tables), description="Tables to follow, `table` or "
                                                                        "`schema.table`, comma-separated "
                                                                        "[default: the legacy catalog's].")
    slot_name: str | None = Field(default=None, description="Replication slot [default: tuneflow_<stream>_<app>].")
    publication: str | None = Field(default=None, description="Publication [default: the slot's name].")
    heartbeat_s: float = Field(default=10.0, gt=0, description="How often to confirm progress (also through quiet "
                                                               "stretches, so the slot does not pin WAL) and "
                                                               "measure the retained WAL.")


class CdcPostgresSource(CdcSource[CdcPostgresOptions]):
    """Change-data-capture from PostgreSQL with pgoutput (logical replication protocol v1)."""

    name = "cdc-postgres"
    options_model = CdcPostgresOptions

    @classmethod
    def leftovers(cls, options: CdcPostgresOptions, stream: str, label: str) -> list[Leftover]:
        """The slot keeps WAL on the server until dropped; a publication named by --publication is the user's."""
        slot = options.slot_name or default_slot_name(stream, label)
        return capture_leftovers(options.url, slot, None if options.publication else slot)

    def setup(self) -> None:
        options, ctx = self.options, self.context
        slot = options.slot_name or default_slot_name(ctx.stream, ctx.label)
        settings = CaptureSettings(url=options.url, tables=[t for t in options.tables.split(",") if t.strip()],
                                   slot=slot, publication=options.publication or slot,
                                   heartbeat_s=options.heartbeat_s, snapshot=options.snapshot,
                                   snapshot_chunk=options.snapshot_chunk,
                                   snapshot_parallel=options.snapshot_parallel)
        metrics = CdcMetrics(ctx.metrics.registry, ctx.stream, ctx.label, ctx.instance)
        progress = SnapshotProgressStore(ctx.binder, progress_topic(ctx.stream, ctx.label)) \
            if settings.snapshots else None
        capture = PostgresCapture(settings, metrics, ctx.log, progress)
        self.capture = capture
        capture.start()
