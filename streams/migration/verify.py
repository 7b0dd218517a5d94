"""Verification: the document store holds exactly what the source says.

`verify_collection` compares a template's documents with a target collection by key ranges: both sides hash the
canonical business content of each document of a range, streamed (the source through the template, the target in
one `_id`-ordered pass), and a range whose digests differ names its missing, extra and different keys from them.
Neither side is held in memory: at most one range's keys and 16-byte digests, and one range of source rows.
A store that cannot stream by key (FerretDB) is read in one unordered pass instead, summing each range's digests.
`verify_tracks` checks the catalog's tracks document by document against the `normalize` rules (what a stream that
validates writes).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from streams.catalog.assemble import assemble_tracks, track_id_batches
from streams.catalog.dburl import dialect_kind
from streams.migration.backfill import plan_chunks
from streams.migration.runs import ChunkPlan
from streams.migration.source import BoundTemplate
from streams.migration.template_reader import CollectionReader, KeyRange
from streams.serde import business_fields, canonical_json, to_plain
from streams.stores.base import DocumentStore


@dataclass
class VerifyReport:
    source_rows: int = 0
    store_documents: int = 0
    missing: list[int] = field(default_factory=list)
    different: list[int] = field(default_factory=list)
    extra: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.different or self.extra)


def verify_tracks(
    engine: Engine,
    store: DocumentStore,
    collection: str = "tracks",
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    report = VerifyReport()
    with engine.connect() as conn:
        for ids in track_id_batches(conn, batch_size):
            expected, _rejected = assemble_tracks(conn, ids)
            stored = store.get_many(collection, [doc.id for doc in expected])
            report.source_rows += len(expected)
            for doc in expected:
                found = stored.get(doc.id)
                if found is None:
                    report.missing.append(doc.id)
                elif canonical_json(business_fields(found)) != canonical_json(business_fields(to_plain(doc))):
                    report.different.append(doc.id)
            if progress is not None:
                progress(len(ids))
    report.store_documents = store.count(collection)
    report.extra = report.store_documents - (report.source_rows - len(report.missing))
    return report


# --- key-range verification through a template ---------------------------------------------------------

SAMPLE_FIELDS = 20


@dataclass
class Difference:
    key: Any
    kind: str  # missing | extra | different
    fields: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CollectionDiff:
    collection: str
    source_documents: int = 0
    target_documents: int = 0
    missing: int = 0
    extra: int = 0
    different: int = 0
    rejected: int = 0
    ranges: int = 0
    ranges_mismatched: int = 0
    samples: list[Difference] = field(default_factory=list)
    keys: dict[str, list[Any]] = field(default_factory=lambda: {"missing": [], "extra": [], "different": []})
    cleared: int = 0  # differences a recheck saw both sides agree on (writes in flight during the pass)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def add(self, other: CollectionDiff, sample: int, keep_keys: int) -> None:
        """Count `other`'s differences in, keeping at most `keep_keys` keys of a kind and `sample` samples."""
        for name in ("source_documents", "target_documents", "missing", "extra", "different", "rejected", "ranges",
                     "ranges_mismatched", "cleared"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for kind, keys in other.keys.items():
            self.keys[kind].extend(keys[: max(0, keep_keys - len(self.keys[kind]))])
        self.samples.extend(other.samples[: max(0, sample - len(self.samples))])

    def findings(self) -> dict[str, Any]:
        """The keys and samples, as JSON keeps them."""
        return {"keys": self.keys, "cleared": self.cleared,
                "samples": [{"key": s.key, "kind": s.kind, "fields": s.fields} for s in self.samples]}

    def found(self, difference: Difference, sample: int, keep_keys: int) -> None:
        kind = difference.kind
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.keys[kind]) < keep_keys:
            self.keys[kind].append(difference.key)
        if len(self.samples) < sample:
            self.samples.append(difference)


def content_digest(document: dict[str, Any]) -> bytes:
    """A 16-byte digest of what verify compares of a document."""
    return hashlib.blake2b(_canonical(document), digest_size=16).digest()


_digest = content_digest


def _canonical(document: dict[str, Any]) -> bytes:
    return canonical_json(business_fields(document))


def field_diff(source: Any, target: Any, path: str = "", limit: int = SAMPLE_FIELDS) -> list[dict[str, Any]]:
    """Where two documents differ: [{path, source, target}], arrays compared position by position."""
    found: list[dict[str, Any]] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if len(found) >= limit:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for name in sorted(set(a) | set(b), key=str):
                if where == "" and name != "_id" and str(name).startswith("_"):
                    continue
                walk(a.get(name, _ABSENT), b.get(name, _ABSENT), f"{where}.{name}" if where else str(name))
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for index, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{where}[{index}]")
        elif a != b or type(a) is not type(b):
            found.append({"path": where, "source": None if a is _ABSENT else a,
                          "target": None if b is _ABSENT else b,
                          **({"absent": "source"} if a is _ABSENT else {"absent": "target"} if b is _ABSENT else {})})

    walk(source, target, path)
    return found


_ABSENT = object()


@dataclass
class RangeVerifier:
    """Compares one collection of a bound template with the target, range by range (see the module docstring)."""

    conn: Connection
    reader: CollectionReader
    store: DocumentStore
    collection: str
    sample: int = 10
    keep_keys: int = 1000
    on_rows: Callable[[int], None] = lambda _rows: None

    def __post_init__(self) -> None:
        self.diff = CollectionDiff(self.collection)

    def run(self, chunk_rows: int) -> CollectionDiff:
        """Every range of the collection, in one pass; the differences of all of them in one diff."""
        total = CollectionDiff(self.collection)
        self.run_ranges(plan_ranges(self.conn, self.reader, chunk_rows),
                        lambda _chunk, diff, _rows: total.add(diff, self.sample, self.keep_keys))
        self.diff = total
        return total

    def run_ranges(self, ranges: Sequence[ChunkPlan], done: Callable[[ChunkPlan, CollectionDiff, int], None],
                   before: Callable[[ChunkPlan], None] = lambda _chunk: None) -> None:
        """Compare each key range (in key order), calling `done(range, its differences, source rows)` after each.

        The target is streamed once from the first range on; a gap between ranges (those finished before a resume)
        starts a new stream at the next range.
        """
        if not self.store.streams_by_key():
            self._run_unordered(ranges, done, before)
            return
        target: _Peekable | None = None
        reached: Any = _ABSENT
        for chunk in ranges:
            before(chunk)
            if target is None or chunk.after != reached:
                target = _Peekable(doc for batch in self.store.scan_range(self.collection, chunk.after, None)
                                   for doc in batch)
            self.diff = CollectionDiff(self.collection, ranges=1)
            source, rows = self._source_digests(chunk.after, chunk.upto)
            target_side = [(document["_id"], _digest(document)) for document in target.take_upto(chunk.upto)]
            self._compare(source, target_side)
            reached = chunk.upto
            done(chunk, self.diff, rows)
            self.on_rows(rows)

    def _run_unordered(self, ranges: Sequence[ChunkPlan],
                       done: Callable[[ChunkPlan, CollectionDiff, int], None],
                       before: Callable[[ChunkPlan], None]) -> None:
        """For a store that cannot stream by key: one unordered pass sums each range's target digests (an
        order-free sum, one per range held), then each range's source side is summed and compared; a range whose
        sums differ has its target documents read by the source's keys, and its extra keys found by a pass over
        the target's keys. A resumed run sums the target again, for its pending ranges only."""
        bounds = _Bounds(ranges)
        sums = [_Sum() for _ in ranges]
        for batch in self.store.scan_unordered(self.collection, batch_size=1000):
            for document in batch:
                index = bounds.index(document["_id"])
                if index is not None:
                    sums[index].add(document["_id"], _digest(document))
        for index, chunk in enumerate(ranges):
            before(chunk)
            self.diff = CollectionDiff(self.collection, ranges=1)
            keys: list[Any] = []
            source, rows = self._source_digests(chunk.after, chunk.upto, keys)
            expected = _Sum()
            for key, digest in source:
                expected.add(key, digest)
            if expected.same(sums[index]):
                self.diff.source_documents += len(source)
                self.diff.target_documents += sums[index].count
            else:
                self._by_key(chunk, source, keys, sums[index].count)
            done(chunk, self.diff, rows)
            self.on_rows(rows)

    def _by_key(self, chunk: ChunkPlan, source: list[tuple[Any, bytes]], keys: list[Any], in_target: int) -> None:
        """Name the keys of a range whose sums differ: its target documents read by the source's keys (rejected
        rows' keys too: a target document for those is extra), then, if the target holds more in the range than
        that found, its extra keys from a pass over the target's keys."""
        stored = self.store.get_many(self.collection, keys) if keys else {}
        self._compare(source, [(key, _digest(stored[key])) for key in keys if key in stored])
        if in_target <= len(stored):
            return
        known = set(keys)
        only = _Bounds([chunk])
        for batch in self.store.scan_keys(self.collection, batch_size=1000):
            for extra in sorted(k for k in batch if k not in known and only.index(k) is not None):
                self.diff.target_documents += 1
                self.diff.found(Difference(extra, "extra"), self.sample, self.keep_keys)

    def _compare(self, source: list[tuple[Any, bytes]], target: list[tuple[Any, bytes]]) -> None:
        self.diff.source_documents += len(source)
        self.diff.target_documents += len(target)
        if source != target:
            self._name_keys(source, target)

    def run_since(self, version: int, batch_size: int = 500) -> CollectionDiff:
        """Only the target documents written above `version`, each against what the source says now."""
        self.diff = CollectionDiff(self.collection, ranges=1)
        for batch in self.store.scan_since(self.collection, version, batch_size):
            keys = tuple(document["_id"] for document in batch)
            source = {item.key: item for item in self.reader.read(self.conn, KeyRange(keys=keys))}
            for document in batch:
                self.diff.target_documents += 1
                item = source.get(document["_id"])
                if item is None or item.document is None:
                    self.diff.found(Difference(document["_id"], "extra"), self.sample, self.keep_keys)
                    continue
                self.diff.source_documents += 1
                if _canonical(item.document) != _canonical(document):
                    self._different(item.document, document)
            self.on_rows(len(batch))
        return self.diff

    def _source_digests(self, after: Any, upto: Any,
                        keys: list[Any] | None = None) -> tuple[list[tuple[Any, bytes]], int]:
        """(key, content digest) of each document the template gives for the range, and the rows it read (their
        keys added to `keys`, rejected ones too: a target document for those is extra)."""
        digests: list[tuple[Any, bytes]] = []
        rows = 0
        for item in self.reader.read(self.conn, KeyRange(after, upto)):
            rows += 1
            if keys is not None:
                keys.append(item.key)
            if item.document is None:
                self.diff.rejected += 1
                continue
            digests.append((item.key, _digest(item.document)))
        return digests, rows

    def _name_keys(self, source: list[tuple[Any, bytes]], target: list[tuple[Any, bytes]]) -> None:
        """The missing, extra and different keys of a range whose sides differ, from both sides' digests.

        Only the first differences of a run are read again (by key) for their field-level samples: a target
        such as FerretDB serves a key lookup from an index but scans the whole collection for a key range.
        """
        self.diff.ranges_mismatched += 1
        stored = dict(target)
        for key, digest in source:
            found = stored.pop(key, None)
            if found is None:
                self.diff.found(Difference(key, "missing"), self.sample, self.keep_keys)
            elif found != digest:
                self._different_key(key)
        for key in stored:
            self.diff.found(Difference(key, "extra"), self.sample, self.keep_keys)

    def _different_key(self, key: Any) -> None:
        if len(self.diff.samples) >= self.sample:
            self.diff.found(Difference(key, "different"), self.sample, self.keep_keys)
            return
        [item] = self.reader.read(self.conn, KeyRange(keys=(key,)))
        target = self.store.get_many(self.collection, [key])[key]
        assert item.document is not None
        self._different(item.document, target)

    def _different(self, source: dict[str, Any], target: dict[str, Any]) -> None:
        fields = field_diff(source, target) if len(self.diff.samples) < self.sample else []
        self.diff.found(Difference(source["_id"], "different", fields), self.sample, self.keep_keys)


class _Sum:
    """An order-free digest of (key, content digest) pairs: their count and their sum modulo 2**128."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add(self, key: Any, digest: bytes) -> None:
        self.count += 1
        item = hashlib.blake2b(repr(key).encode() + b"\0" + digest, digest_size=16).digest()
        self.total = (self.total + int.from_bytes(item, "big")) % (1 << 128)

    def same(self, other: _Sum) -> bool:
        return self.count == other.count and self.total == other.total


class _Bounds:
    """Which of some key ranges (after, upto], in key order and not overlapping, holds a key."""

    def __init__(self, ranges: Sequence[ChunkPlan]) -> None:
        self._ranges = list(ranges)
        self._uptos = [chunk.upto for chunk in self._ranges if chunk.upto is not None]

    def index(self, key: Any) -> int | None:
        at = bisect.bisect_left(self._uptos, key)
        if at == len(self._ranges):
            return None
        chunk = self._ranges[at]
        if chunk.after is not None and not chunk.after < key:
            return None
        if chunk.upto is not None and not key <= chunk.upto:
            return None
        return at


class _Peekable:
    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items
        self.head: Any = next(items, None)

    def next(self) -> None:
        self.head = next(self._items, None)

    def take_upto(self, upto: Any) -> Iterator[dict[str, Any]]:
        """The documents up to key `upto` (all that are left when None)."""
        while self.head is not None and (upto is None or self.head["_id"] <= upto):
            yield self.head
            self.next()


def plan_ranges(conn: Connection, reader: CollectionReader, chunk_rows: int) -> list[ChunkPlan]:
    """The source's key ranges of about `chunk_rows` rows, and one more above the last key (for extra documents)."""
    ranges = plan_chunks(conn, reader, chunk_rows) or [ChunkPlan(reader.collection.name, 0, None, None, 0)]
    if ranges[-1].upto is not None:  # target keys above the last source key are extra
        ranges.append(ChunkPlan(reader.collection.name, len(ranges), ranges[-1].upto, None, 0))
    return ranges


def verify_collection(engine: Engine, bound: BoundTemplate, store: DocumentStore, collection: str, *,
                      chunk_rows: int = 5000, sample: int = 10, since: int | None = None,
                      on_rows: Callable[[int], None] | None = None) -> CollectionDiff:
    """One collection of the template against the target (see RangeVerifier); one read transaction at the source."""
    with engine.connect() as conn:
        if dialect_kind(engine) == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            verifier = RangeVerifier(conn, bound.readers[collection], store, collection, sample=sample,
                                     on_rows=on_rows or (lambda _rows: None))
            return verifier.run(chunk_rows) if since is None else verifier.run_since(since)
