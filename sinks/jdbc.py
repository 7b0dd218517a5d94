"""`jdbc` sink: documents written back into the relational tables a migration template maps, one transaction each.

Version-guarded by the template's version column (the catalog's `updated_at`); every transaction is marked so that
CDC of the same database drops it (streams/cdc/origin.py). A value that does not fit its column sends its record to
the DLQ with the reason; the rest of the batch is written.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from sinks.base import AppOptions, Outcome, SinkApp
from sinks.changes import pending_changes
from streams.migration.dual_write import rejected_failures
from streams.migration.template import catalog_template_path
from streams.records import Record
from streams.stores.factory import open_relational_store
from streams.stores.relational import RelationalStore


class JdbcOptions(AppOptions):
    url: str = Field(description="The database: postgresql://…, mariadb://…, mysql://… or sqlite:///….")
    template: str | None = Field(default=None, description="Migration template [default: the catalog's, "
                                                            "deploy/templates/catalog.yaml].")
    collection: str = Field(default="tracks", description="The template collection the records are documents of.")


class JdbcSink(SinkApp[JdbcOptions]):
    name = "jdbc"
    options_model = JdbcOptions

    store: RelationalStore | None = None

    def setup(self) -> None:
        """Check the template against the database and reflect its tables; retried while the database is down."""
        if self.store is None:
            template = self.options.template or str(catalog_template_path())
            self.store = open_relational_store(self.options.url, template, self.options.collection,
                                               writer=f"{self.context.stream}.{self.context.label}")
        self.store.open()

    def write(self, batch: Sequence[Record]) -> Outcome:
        outcome = Outcome()
        items, outcome.failures = pending_changes(batch)
        if items:
            assert self.store is not None, "write() before setup()"
            result = self.store.apply(self.options.collection, [item.change for item in items])
            outcome.failures += rejected_failures(items, result, "unwritable", "rdbms")
        return outcome

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
