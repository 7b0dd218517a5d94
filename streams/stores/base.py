"""The document-store contract every store honours: version-guarded upserts and tombstones, batch by batch."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from streams.errors import ConfigError

VERSION_FIELD = "_version"
DELETED_FIELD = "_deleted"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# What a document store holds exactly as an integer (BSON int64); anything wider would be stored rounded.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def checked_name(kind: str, name: str) -> str:
    """Database and collection names come from config: accept only plain identifiers."""
    if not _NAME.match(name):
        raise ConfigError(
            f"invalid {kind} name {name!r}: use letters, digits and '_', starting with a letter or '_' "
            "(at most 63 characters)"
        )
    return name


@dataclass(frozen=True, slots=True)
class Change:
    """Set `key` to `document`, or delete it if `document` is None, when `version` is the newer one."""

    key: Any
    version: int
    document: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: int
    stale: int
    # Documents a store refused for their content (a value that does not fit its column), by key, with the
    # reasons: the rest of the batch is written; these go to the DLQ.
    rejected: dict[Any, list[dict[str, str]]] = field(default_factory=dict)


class DocumentStore(Protocol):
    def apply(self, collection: str, changes: Sequence[Change]) -> ApplyResult:
        """Apply a batch in one round trip; older-or-equal versions leave the stored state untouched."""
        ...

    def get_many(self, collection: str, keys: Sequence[Any]) -> dict[Any, dict[str, Any]]:
        """Visible documents (tombstones are not) by key, with bookkeeping fields included."""
        ...

    def count(self, collection: str) -> int:
        """Number of visible documents."""
        ...

    def scan(self, collection: str, batch_size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """Every visible document, in key order, in batches."""
        ...

    def scan_range(self, collection: str, after: Any, upto: Any,
                   batch_size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """Visible documents with keys in (after, upto] (None: open-ended), in key order, in batches."""
        ...

    def scan_since(self, collection: str, version: int, batch_size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """Visible documents written with a version above `version`, in key order, in batches."""
        ...

    def scan_unordered(self, collection: str, batch_size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """Every visible document, in no particular order, in batches: one streamed pass."""
        ...

    def scan_keys(self, collection: str, batch_size: int = 1000) -> Iterator[list[Any]]:
        """The keys of every visible document, in no particular order, in batches: one streamed pass."""
        ...

    def streams_by_key(self) -> bool:
        """Whether key-ordered and key-range scans stream from an index; when not (FerretDB sorts a whole
        collection in memory and scans it for a range), scan unordered or read by key instead."""
        ...

    def drop(self, collection: str) -> None: ...

    def close(self) -> None: ...


def storable_key(key: Any) -> Any:
    """`key` if every store can hold it exactly: a 64-bit integer or a non-empty string; ValueError says why not."""
    if isinstance(key, bool) or not isinstance(key, int | str):
        raise ValueError(f"key {key!r} is a {type(key).__name__}: a key is an integer or a string")
    if isinstance(key, int) and not INT64_MIN <= key <= INT64_MAX:
        raise ValueError(f"key {key} does not fit a 64-bit integer: it would be stored rounded")
    if isinstance(key, str) and not key:
        raise ValueError("key is an empty string")
    return key


def storable_version(version: int) -> int:
    """`version` if it fits the stored 64-bit `_version`; ValueError says why not."""
    if not 0 <= version <= INT64_MAX:
        raise ValueError(f"version {version} is outside 0 … 2^63-1: a store cannot compare it exactly")
    return version


def newest_per_key(changes: Sequence[Change]) -> list[Change]:
    """Within one batch only the highest version of each key matters; it also keeps one write per key."""
    best: dict[Any, Change] = {}
    for change in changes:
        current = best.get(change.key)
        if current is None or change.version > current.version:
            best[change.key] = change
    return list(best.values())
