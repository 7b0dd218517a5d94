"""`jdbc` source: a snapshot of the legacy catalog's tracks, or of a migration template's documents, in key order.

Without `template`, each record is one track assembled from the legacy tables (track, album, artists, genres), keyed
by its id, in the shape `normalize` validates; rows that break the catalog rules are dropped by `normalize` into its
DLQ with the reasons; one instance reads the whole table. With `template`, each record is one document of the
template's collection, read in key-range chunks by sort-merge; `parts` instances share the chunks (instance i reads
every chunk whose number modulo `parts` is i). The snapshot ends when every row has been read (`exhausted`).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import orjson
from pydantic import Field
from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.exc import DBAPIError, OperationalError

from sources.base import AppOptions, SourceApp
from streams.catalog.assemble import next_track_ids, track_payloads
from streams.catalog.dburl import credentials_refused, error_reason, make_engine, mask_password
from streams.errors import ConfigError, TransientError
from streams.migration.backfill import next_boundary
from streams.migration.source import load_bound
from streams.migration.template_reader import CollectionReader, KeyRange
from streams.records import Record


class JdbcOptions(AppOptions):
    url: str = Field(min_length=1, description="The legacy catalog database: postgresql://, mariadb:// or sqlite:///.")
    after: int = Field(default=0, ge=0, description="Start after this track id (resume a snapshot).")
    template: str | None = Field(default=None, description="A migration template (YAML): emit its documents "
                                 "instead of the catalog's tracks.")
    collection: str | None = Field(default=None, description="Which collection of the template [default: the first].")
    chunk_rows: int = Field(default=5000, ge=1, description="With a template: root rows per key-range chunk.")
    parts: int = Field(default=1, ge=1, description="With a template: how many instances share its chunks (give "
                       "deployer.jdbc.count); instance i reads every chunk whose number modulo parts is i.")


class JdbcSource(SourceApp[JdbcOptions]):
    name = "jdbc"
    options_model = JdbcOptions
    _exhausted = False  # read by the embedded deployer from another thread, maybe before setup() ran

    def setup(self) -> None:
        self._masked = mask_password(self.options.url)
        self._last = self.options.after
        self._chunks: TemplateChunks | None = None
        if self.options.template is not None:
            collections = [self.options.collection] if self.options.collection else None
            engine, bound = load_bound(self.options.template, self.options.url, collections)
            self._engine: Engine = engine
            self._chunks = TemplateChunks(next(iter(bound.readers.values())), self.options.chunk_rows,
                                          self.options.parts, self.context.instance, self.options.after or None)
            return
        self._engine = make_engine(self.options.url)
        try:
            with self._engine.connect() as conn:
                if not inspect(conn).has_table("track"):
                    raise ConfigError(f"{self._masked} holds no legacy catalog (no table 'track'); "
                                      "make one with `tuneflow catalog generate`")
        except DBAPIError as exc:
            reason = error_reason(exc, self.options.url)
            if credentials_refused(exc):
                raise ConfigError(f"the legacy catalog at {self._masked} refused the credentials: {reason}") from None
            if isinstance(exc, OperationalError):
                raise TransientError(f"cannot reach the legacy catalog at {self._masked}: {reason}") from None
            raise ConfigError(f"cannot read the legacy catalog at {self._masked}: {reason}") from None

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._exhausted:
            time.sleep(timeout_s)
            return []
        try:
            with self._engine.connect() as conn:
                if self._chunks is not None:
                    records = self._chunks.next(conn, max_records)
                    self._exhausted = self._chunks.done
                    return records
                payloads = self._next(conn, max_records)
        except OperationalError as exc:
            raise TransientError(f"legacy catalog at {self._masked}: {error_reason(exc, self.options.url)}") from None
        if not payloads:
            self._exhausted = True
            self.context.log.info("snapshot complete: every track after id %d read", self.options.after)
            return []
        self._last = payloads[-1]["_id"]
        return [Record(key=str(p["_id"]).encode(), value=orjson.dumps(p)) for p in payloads]

    def _next(self, conn: Connection, max_records: int) -> list[dict[str, object]]:
        ids = next_track_ids(conn, self._last, max_records)
        return track_payloads(conn, ids) if ids else []

    def close(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.dispose()


class TemplateChunks:
    """This instance's share of a template collection's key-range chunks, as records, a batch at a time."""

    def __init__(self, reader: CollectionReader, chunk_rows: int, parts: int, instance: int, after: Any) -> None:
        self._reader, self._chunk_rows, self._parts, self._instance = reader, chunk_rows, parts, instance
        self._after, self._number, self._last_chunk = after, 0, False
        self._pending: deque[Record] = deque()

    @property
    def done(self) -> bool:
        return self._last_chunk and not self._pending

    def next(self, conn: Connection, max_records: int) -> list[Record]:
        while len(self._pending) < max_records and not self._last_chunk:
            upto = next_boundary(conn, self._reader, self._after, self._chunk_rows)
            if self._number % self._parts == self._instance:
                for item in self._reader.read(conn, KeyRange(self._after, upto)):
                    if item.document is not None:  # a row the template refuses has no document to emit
                        self._pending.append(Record(key=str(item.key).encode(), value=orjson.dumps(item.document)))
            self._number += 1
            self._after, self._last_chunk = upto, upto is None
        return [self._pending.popleft() for _ in range(min(max_records, len(self._pending)))]

