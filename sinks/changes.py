"""The guarded write a normalized record asks for: its key, its version and its document (None: a delete).

A record's version is its `tf-version` header when present (CDC and assemble set it), else its `updated_at`
(microseconds since the epoch). A delete is `{"op": "delete", "_id": key}` or `{"op": "delete", "track_id": id}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from sinks.base import Failure
from streams.catalog.models import timestamp_version
from streams.migration.dual_write import Pending
from streams.records import VERSION_HEADER, Record
from streams.stores.base import Change, storable_key, storable_version


def pending_changes(batch: Sequence[Record]) -> tuple[list[Pending], list[Failure]]:
    """Each record with its change, and the records that cannot be written (for the DLQ, with the reason)."""
    items: list[Pending] = []
    failures: list[Failure] = []
    for record in batch:
        try:
            items.append(Pending(record, to_change(record)))
        except ValueError as exc:
            failures.append(Failure(record, [{"field": "", "message": str(exc)}], kind="unwritable"))
    return items, failures


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
