"""The embedded document store (`embedded:///dir`): SQLite files with the same guarded-upsert semantics.

It serves `tuneflow run`, `make demo` and fast unit tests; production streams write MongoDB.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from streams.stores.base import (
    DELETED_FIELD,
    VERSION_FIELD,
    ApplyResult,
    Change,
    checked_name,
    newest_per_key,
)

SCHEME = "embedded://"


def path_from_uri(uri: str) -> Path:
    return Path(uri.removeprefix(SCHEME)).expanduser()


class EmbeddedStore:
    def __init__(self, directory: Path, database: str = "catalog") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{checked_name('database', database)}.sqlite"
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._known: set[str] = set()

    @classmethod
    def from_uri(cls, uri: str, database: str = "catalog") -> EmbeddedStore:
        return cls(path_from_uri(uri), database)

    def _table(self, collection: str) -> str:
        name = checked_name("collection", collection)
        if name not in self._known:
            self._db.execute(
                f'CREATE TABLE IF NOT EXISTS "{name}" ('
                "key PRIMARY KEY, version INTEGER NOT NULL, deleted INTEGER NOT NULL, body BLOB)"
            )
            self._known.add(name)
        return name

    def apply(self, collection: str, changes: Sequence[Change]) -> ApplyResult:
        table = self._table(collection)
        rows = [
            (
                _encode_key(change.key),
                change.version,
                int(change.document is None),
                None if change.document is None else orjson.dumps(change.document),
            )
            for change in newest_per_key(changes)
        ]
        before = self._db.total_changes
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                f'INSERT INTO "{table}" (key, version, deleted, body) VALUES (?, ?, ?, ?) '
                "ON CONFLICT(key) DO UPDATE SET version = excluded.version, deleted = excluded.deleted, "
                f'body = excluded.body WHERE excluded.version > "{table}".version',
                rows,
            )
        applied = self._db.total_changes - before
        return ApplyResult(applied=applied, stale=len(changes) - applied)

    def get_many(self, collection: str, keys: Sequence[Any]) -> dict[Any, dict[str, Any]]:
        table = self._table(collection)
        found: dict[Any, dict[str, Any]] = {}
        encoded = [_encode_key(key) for key in keys]
        for start in range(0, len(encoded), 500):
            chunk = encoded[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, version, body in self._db.execute(
                f'SELECT key, version, body FROM "{table}" WHERE deleted = 0 AND key IN ({marks})', chunk
            ):
                found[key] = _document(body, version)
        return found

    def count(self, collection: str) -> int:
        table = self._table(collection)
        (total,) = self._db.execute(f'SELECT count(*) FROM "{table}" WHERE deleted = 0').fetchone()
        return int(total)

    def scan(self, collection: str, batch_size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        return self._scan(collection, "", (), batch_size)

    def scan_range(self, collection: str, after: Any, upto: Any,
                   batch_size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        where, values = "", []
        if after is not None:
            where, values = " AND key > ?", [_encode_key(after)]
        if upto is not None:
            where, values = where + " AND key <= ?", [*values, _encode_key(upto)]
        return self._scan(collection, where, values, batch_size)

    def scan_unordered(self, collection: str, batch_size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        return self.scan(collection, batch_size)

    def scan_keys(self, collection: str, batch_size: int = 1000) -> Iterator[list[Any]]:
        for batch in self.scan(collection, batch_size):
            yield [document["_id"] for document in batch]

    def streams_by_key(self) -> bool:
        return True

    def scan_since(self, collection: str, version: int, batch_size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        return self._scan(collection, " AND version > ?", (version,), batch_size)

    def _scan(self, collection: str, where: str, values: Sequence[Any],
              batch_size: int) -> Iterator[list[dict[str, Any]]]:
        table = self._table(collection)
        cursor = self._db.execute(
            f'SELECT key, version, body FROM "{table}" WHERE deleted = 0{where} ORDER BY key', values)
        while rows := cursor.fetchmany(batch_size):
            yield [{**_document(body, version), "_id": key} for key, version, body in rows]

    def version_of(self, collection: str, key: Any) -> tuple[int, bool] | None:
        """The stored version of `key` and whether it is a tombstone; None if never written."""
        table = self._table(collection)
        row = self._db.execute(
            f'SELECT version, deleted FROM "{table}" WHERE key = ?', (_encode_key(key),)
        ).fetchone()
        return None if row is None else (int(row[0]), bool(row[1]))

    def drop(self, collection: str) -> None:
        name = checked_name("collection", collection)
        self._db.execute(f'DROP TABLE IF EXISTS "{name}"')
        self._known.discard(name)

    def close(self) -> None:
        self._db.close()


def _encode_key(key: Any) -> int | str:
    # A column without type affinity keeps 7 and "7" apart, as MongoDB does, and sorts numbers numerically.
    if isinstance(key, bool) or not isinstance(key, int | str):
        raise TypeError(f"embedded store keys are int or str, not {type(key).__name__}")
    return key


def _document(body: bytes, version: int) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(body)
    document[VERSION_FIELD] = version
    document[DELETED_FIELD] = False
    return document
