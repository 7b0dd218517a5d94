"""`mongo` sink: version-guarded upserts and tombstones, one unordered bulk write per batch.

A record's version is its `tf-version` header when present (CDC and assemble set it), else its `updated_at`. A record
with a `tf-collection` header (assemble's) goes to that collection, others to `--collection`. A delete is
`{"op": "delete", "_id": key}` (any collection) or `{"op": "delete", "track_id": id}` (a track, as ingested).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from sinks.base import AppOptions, Failure, Outcome, SinkApp
from sinks.changes import to_change
from streams import settings
from streams.errors import ConfigError
from streams.records import COLLECTION_HEADER, Record
from streams.stores.base import Change, DocumentStore, checked_name
from streams.stores.factory import open_store

TRACK_INDEXES = ("isrc", "album.album_id", "artists.artist_id")


class MongoOptions(AppOptions):
    uri: str = Field(default_factory=settings.mongo_uri,
                     description="mongodb://… or embedded:///dir [default: $TUNEFLOW_MONGO_URI].")
    database: str = Field(default="catalog", description="Database name.")
    collection: str = Field(default="tracks", description="Collection name.")


class MongoSink(SinkApp[MongoOptions]):
    name = "mongo"
    options_model = MongoOptions

    store: DocumentStore | None = None

    def setup(self) -> None:
        """Open the store and create the indexes; retried by the harness while the store is unreachable."""
        if self.store is None:
            self.store = open_store(self.options.uri, self.options.database)
        ensure = getattr(self.store, "ensure_indexes", None)
        if ensure is not None and self.options.collection == "tracks":
            ensure(self.options.collection, TRACK_INDEXES)

    def write(self, batch: Sequence[Record]) -> Outcome:
        outcome = Outcome()
        by_collection: dict[str, list[Change]] = {}
        default = self.options.collection
        for record in batch:
            try:
                change = to_change(record)
                named = record.headers.get(COLLECTION_HEADER)
                collection = default if named is None else checked_name("collection", named.decode())
            except (ValueError, ConfigError, UnicodeDecodeError) as exc:
                outcome.failures.append(Failure(record, [{"field": "", "message": str(exc)}], kind="unwritable"))
                continue
            by_collection.setdefault(collection, []).append(change)
        for collection, changes in by_collection.items():
            assert self.store is not None, "write() before setup()"
            self.store.apply(collection, changes)
        return outcome

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
