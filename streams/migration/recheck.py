"""Differences seen while writers write, read again until one side is seen to reach what the other held.

A verify under live load compares the source in its snapshot with a target that has moved on since, and a store
written a moment after the other (dual-write's shadow, the catch-up's sink) lags it: a key written meanwhile differs
without being wrong. `Recheck` reads every differing key of a range again on both sides (the source as committed
now, outside the snapshot), round after round, alternating which side is read first, and remembers the contents
each side was seen to hold. A key is cleared once one side is seen holding a content the other side held in the
same round or an earlier one: the write in flight landed (both holding nothing counts). A key never seen so within
`seconds` stays a difference: a lost write stays lost, since its side never reaches the other's content.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from streams.migration.template_reader import CollectionReader, KeyRange
from streams.migration.verify import CollectionDiff, content_digest
from streams.stores.base import DocumentStore

KINDS = ("missing", "extra", "different")
INTERVAL_S = 0.2
ABSENT = b""


@dataclass
class Recheck:
    """Reads a range's differing keys again on both sides for up to `seconds` (see the module docstring)."""

    connect: Callable[[], AbstractContextManager[Connection]]
    reader: CollectionReader
    store: DocumentStore
    collection: str
    seconds: float
    interval_s: float = INTERVAL_S

    def __call__(self, diff: CollectionDiff) -> CollectionDiff:
        """`diff` without the keys both sides were seen to agree on; unchanged when it does not name every key."""
        named = {key: kind for kind in KINDS for key in diff.keys[kind]}
        if diff.ok or len(named) < diff.missing + diff.extra + diff.different:
            return diff
        open_keys = list(named)
        seen: dict[Any, tuple[set[bytes], set[bytes]]] = {key: (set(), set()) for key in open_keys}
        deadline = time.monotonic() + self.seconds
        source_first = True
        while open_keys and time.monotonic() < deadline:
            source, target = self._read(open_keys, source_first)
            still = []
            for key in open_keys:
                in_source, in_target = seen[key]
                now_source, now_target = source.get(key, ABSENT), target.get(key, ABSENT)
                in_source.add(now_source)
                in_target.add(now_target)
                if now_target not in in_source and now_source not in in_target:
                    still.append(key)
            open_keys = still
            source_first = not source_first
            if open_keys:
                time.sleep(self.interval_s)
        left = set(open_keys)
        return _without(diff, {key for key in named if key not in left})

    def _read(self, keys: list[Any], source_first: bool) -> tuple[dict[Any, bytes], dict[Any, bytes]]:
        if source_first:
            source = self._source(keys)
            return source, self._target(keys)
        target = self._target(keys)
        return self._source(keys), target

    def _source(self, keys: list[Any]) -> dict[Any, bytes]:
        with self.connect() as conn:
            items = list(self.reader.read(conn, KeyRange(keys=tuple(keys))))
        return {item.key: content_digest(item.document) for item in items if item.document is not None}

    def _target(self, keys: list[Any]) -> dict[Any, bytes]:
        found = self.store.get_many(self.collection, keys)
        return {key: content_digest(document) for key, document in found.items()}


def _without(diff: CollectionDiff, cleared: set[Any]) -> CollectionDiff:
    """The same range's differences less the cleared keys, which it counts."""
    if not cleared:
        return diff
    kept = {kind: [key for key in diff.keys[kind] if key not in cleared] for kind in KINDS}
    result = CollectionDiff(diff.collection, source_documents=diff.source_documents,
                            target_documents=diff.target_documents, rejected=diff.rejected, ranges=diff.ranges,
                            ranges_mismatched=diff.ranges_mismatched,
                            samples=[sample for sample in diff.samples if sample.key not in cleared], keys=kept,
                            cleared=diff.cleared + len(cleared))
    result.missing, result.extra, result.different = (len(kept[kind]) for kind in KINDS)
    return result
