"""`mongo` sink: version-guarded upserts and tombstones, one unordered bulk write per batch.

A record's version is its `tf-version` header when present (CDC and assemble set it), else its `updated_at`. A record
with a `tf-collection` header (assemble's) goes to that collection, others to `--collection`. A delete is
`{"op": "delete", "_id": key}` (any collection) or `{"op": "delete", "track_id": id}` (a track, as ingested).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import Field

from sinks.base import AppOptions, Failure, Outcome, SinkApp
from streams import settings
from streams.catalog.models import timestamp_version
from streams.errors import ConfigError
from streams.records import COLLECTION_HEADER, VERSION_HEADER, Record
from streams.stores.base import Change, DocumentStore, checked_name, storable_key, storable_version
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


def to_change(record: Record) -> Change:
    """The guarded write a normalized record asks for; ValueError says why it cannot be written."""
    try:
        document: dict[str, Any] = orjson.loads(record.value)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"value is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("value is not a JSON object")
    deleting = document.get("op") == "delete"
    key = document.get("_id")
    if deleting and key is None:
        key = document.get("track_id")
    if key is None:
        raise ValueError("no key: a document needs '_id', a delete needs '_id' (or a track's 'track_id')")
    return Change(key=storable_key(key), version=storable_version(_version(record, document)),
                  document=None if deleting else document)


def _version(record: Record, document: dict[str, Any]) -> int:
    header = record.headers.get(VERSION_HEADER)
    if header is not None:
        try:
            return int(header)
        except ValueError:
            raise ValueError(f"header {VERSION_HEADER} is not an integer: {header!r}") from None
    updated_at = document.get("updated_at")
    if not isinstance(updated_at, str):
        raise ValueError(f"no version: needs a {VERSION_HEADER} header or an 'updated_at' timestamp")
    try:
        return timestamp_version(datetime.fromisoformat(updated_at))
    except ValueError:
        raise ValueError(f"updated_at is not an ISO-8601 timestamp: {updated_at!r}") from None
