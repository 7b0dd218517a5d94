"""`dual-write` sink: each batch to the primary store, then to the shadow, as the migration's switch routes it.

A shadow failure is never dropped: the changes go to the repair topic `<stream>.<label>.repair` (durable before the
batch counts as done) and a repair loop in this app writes them again until the store takes them;
`tuneflow_shadow_backlog` is what it still owes. See streams/migration/dual_write.py and repair.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from sinks.base import AppOptions, Outcome, SinkApp
from sinks.changes import pending_changes, to_change
from sinks.mongo import TRACK_INDEXES
from streams import settings
from streams.errors import ServiceUnavailableError
from streams.migration.dual_write import DualWriter, Outbox, repair_topic
from streams.migration.phases import FixedPhase, Phase, PhaseView, StoreRole, SwitchState, routing
from streams.migration.repair import RepairLoop
from streams.migration.shadow_metrics import ShadowMetrics
from streams.migration.switch_watch import SwitchWatch, open_phase_view
from streams.migration.template import catalog_template_path
from streams.records import Record
from streams.stores.base import DocumentStore
from streams.stores.factory import open_relational_store, open_store


class DualWriteOptions(AppOptions):
    mongo_uri: str = Field(default_factory=settings.mongo_uri,
                           description="mongodb://… or embedded:///dir [default: $TUNEFLOW_MONGO_URI].")
    database: str = Field(default="catalog", description="MongoDB database.")
    rdbms_url: str = Field(description="The relational database: postgresql://…, mariadb://…, sqlite:///….")
    template: str | None = Field(default=None, description="Migration template [default: the catalog's].")
    collection: str = Field(default="tracks", description="Template collection (and MongoDB collection).")
    migration: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
                                  description="Follow this migration's switch live (`tuneflow switch`); without "
                                              "it, --phase holds for the app's life.")
    phase: Phase = Field(default=Phase.DUAL_RDBMS_PRIMARY, description="The phase applied when no --migration is "
                                                                        "given.")
    chunk_size: int = Field(default=100, ge=1, le=100_000, description="Documents per store write; the shadow "
                                                                       "writes one chunk while the primary writes "
                                                                       "the next.")


def open_rdbms_writer(url: str, template: str, collection: str, writer: str) -> DocumentStore:
    """The relational store of the template's `collection`, checked against the database."""
    store = open_relational_store(url, template, collection, writer=writer)
    try:
        store.open()
    except BaseException:
        store.close()
        raise
    return store


def open_mongo_writer(uri: str, database: str, collection: str) -> DocumentStore:
    """The document store, with the track indexes when it holds tracks."""
    store = open_store(uri, database)
    try:
        ensure = getattr(store, "ensure_indexes", None)
        if ensure is not None and collection == "tracks":
            ensure(collection, TRACK_INDEXES)
    except BaseException:
        store.close()
        raise
    return store


class DualWriteSink(SinkApp[DualWriteOptions]):
    name = "dual-write"
    options_model = DualWriteOptions

    writer: DualWriter | None = None
    repair: RepairLoop | None = None

    def setup(self) -> None:
        """Open both stores, the outbox and the repair loop; retried while a store is unreachable."""
        context = self.context
        if self.writer is None:
            stores = self._open_stores()
            metrics = ShadowMetrics(context.metrics.registry, context.stream, context.label, context.instance)
            topic = repair_topic(context.stream, context.label)
            view = self._phase_view()
            self.writer = DualWriter(stores, self.options.collection, view, Outbox(context.binder.output(), topic),
                                     metrics, context.log, chunk_size=self.options.chunk_size)
            if isinstance(view, SwitchWatch):
                # An instance acknowledges a new phase only once the batch it was writing under the old one is done,
                # so the switch moves readers only to a store that holds every write acknowledged before.
                view.on_change(lambda _state: self.writer.quiesce() if self.writer is not None else None)
            self.repair = RepairLoop(context.binder, topic, f"{context.stream}.{context.label}.dlq", context.instance,
                                     self.options.collection, self._open_stores, to_change, metrics, context.log)
            self.repair.start()

    def _phase_view(self) -> PhaseView:
        migration, phase = self.options.migration, self.options.phase
        if migration is None:
            self.context.log.info("applying phase %s (no --migration: fixed)", phase.value)
            return FixedPhase(SwitchState("-", phase, routing(phase).reads, 0))
        return open_phase_view(self.context, migration)

    def _open_stores(self) -> dict[StoreRole, DocumentStore]:
        """Both stores, checked (the dual writer's and the repair loop's)."""
        options = self.options
        template = options.template or str(catalog_template_path())
        rdbms = open_rdbms_writer(options.rdbms_url, template, options.collection,
                                  writer=f"{self.context.stream}.{self.context.label}")
        try:
            mongo = open_mongo_writer(options.mongo_uri, options.database, options.collection)
        except BaseException:
            rdbms.close()
            raise
        return {StoreRole.RDBMS: rdbms, StoreRole.MONGO: mongo}

    def write(self, batch: Sequence[Record]) -> Outcome:
        assert self.writer is not None and self.repair is not None, "write() before setup()"
        if self.repair.error is not None:
            raise ServiceUnavailableError(f"the repair loop stopped: {self.repair.error}")
        outcome = Outcome()
        items, outcome.failures = pending_changes(batch)
        if items:
            outcome.failures += self.writer.write(items)
        return outcome

    def close(self) -> None:
        if self.writer is not None and isinstance(self.writer.view, SwitchWatch):
            self.writer.view.close()
        if self.repair is not None:
            self.repair.stop()
        if self.writer is not None:
            self.writer.close()
            self.writer.outbox.output.close()
            for store in self.writer.stores.values():
                store.close()
