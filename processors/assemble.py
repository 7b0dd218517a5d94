"""`assemble`: CDC row changes of any table a migration template reads → the template's documents, re-read.

Each batch of `cdc-postgres` / `cdc-mysql` records names rows; every document those rows are part of (a track for its
own row, credits and genres; every track of a changed album or artist, found through the template's joins, one query
per hop per batch) is read again from the source through the template, in batches of keys, once the source shows the
batch's transactions committed. Out comes one record per document, keyed by its key, its value the document (or
`{"op": "delete", "_id": key}` when the root row is gone: a versioned tombstone), with headers `tf-version` (the
highest change-log position among the changes that touched it: the newest state wins in a version-guarded sink
whatever order partitions deliver in) and `tf-collection` (which collection: one `mongo` sink routes every
collection of the template by it). Rows of tables the template does not read pass through with no output.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from pydantic import Field
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from processors.base import AppOptions, Failure, Outcome, ProcessorApp
from streams.catalog.dburl import mask_password
from streams.errors import ConfigError, ServiceUnavailableError, TransientError
from streams.migration.assembler import Assembler, RowChange, check_replica_identity, parse_change
from streams.migration.source import load_bound, source_errors
from streams.migration.template import catalog_template_path
from streams.records import COLLECTION_HEADER, VERSION_HEADER, Record
from streams.serde import dumps


class AssembleOptions(AppOptions):
    source: str = Field(min_length=1, description="The database the changes come from, read through the template: "
                                                  "postgresql://…, mariadb://… or sqlite:///….")
    password_env: str | None = Field(default=None, description="Name of an environment variable holding the "
                                     "source's password (kept out of the URL and the stream definition).")
    template: str | None = Field(default=None, description="The migration template (YAML) "
                                 "[default: deploy/templates/catalog.yaml].")
    collections: str | None = Field(default=None, description="Comma-separated collections of the template to emit "
                                    "[default: all]; each record names its collection in the tf-collection header, "
                                    "by which one `mongo` sink writes every collection.")
    keys_per_read: int = Field(default=1000, ge=1, le=10_000, description="Documents read per query batch.")
    visible_timeout_s: float = Field(default=30.0, gt=0, description="Longest wait for the source to show a batch's "
                                     "transactions committed before the batch is retried.")


class Assemble(ProcessorApp[AssembleOptions]):
    name = "assemble"
    options_model = AssembleOptions

    assembler: Assembler | None = None

    def setup(self) -> None:
        url = self._url()
        template = self.options.template or str(catalog_template_path())
        names = [n.strip() for n in self.options.collections.split(",") if n.strip()] if self.options.collections \
            else None
        engine, bound = load_bound(template, url, names)
        self._engine: Engine = engine
        with source_errors(url):
            self.assembler = Assembler(engine, bound, self.options.keys_per_read, self.options.visible_timeout_s)
            check_replica_identity(engine, self.assembler)

    def _url(self) -> str:
        if self.options.password_env is None:
            return self.options.source
        password = os.environ.get(self.options.password_env)
        if password is None:
            raise ConfigError(f"--password-env: the environment variable {self.options.password_env} is not set")
        try:
            return make_url(self.options.source).set(password=password).render_as_string(hide_password=False)
        except Exception:
            raise ConfigError(f"malformed source URL {mask_password(self.options.source)!r}") from None

    def process(self, batch: Sequence[Record]) -> Outcome:
        assert self.assembler is not None, "process() before setup()"
        outcome = Outcome()
        changes: list[RowChange] = []
        origins: list[Record] = []
        for record in batch:
            try:
                changes.append(parse_change(record))
                origins.append(record)
            except ValueError as exc:
                outcome.failures.append(Failure(record, [{"field": "", "message": str(exc)}]))
        if not changes:
            return outcome
        try:
            with source_errors(self.options.source):
                result = self.assembler.assemble(changes)
        except ServiceUnavailableError as exc:  # the source went away mid-stream: retried like any outage
            raise TransientError(str(exc)) from None
        for change in result.changes:
            value = {"op": "delete", "_id": change.key} if change.document is None else change.document
            outcome.outputs.append(Record(dumps(change.key), dumps(value), {
                VERSION_HEADER: str(change.version).encode(), COLLECTION_HEADER: change.collection.encode()}))
        if result.errors:  # rows that break the template: the batch's first record carries every reason
            reasons = [{"field": f"{collection}/{key}", "message": reason} for collection, key, reason in result.errors]
            outcome.failures.append(Failure(origins[0], reasons, kind="unassemblable"))
        for index, reason in result.unsupported:
            outcome.failures.append(Failure(origins[index], [{"field": "op", "message": reason}], kind="unsupported"))
        return outcome

    def close(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.dispose()
