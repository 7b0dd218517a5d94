"""A CDC source's initial snapshot, whatever the database: readers, each on a connection of its own inside one
consistent snapshot, read the tables' parts side by side in key-ordered chunks; the chunks are handed out as `op=r`
records versioned with the snapshot's log position, and the progress is saved once a chunk's rows are durable, so an
interrupted snapshot resumes after its last durable chunks and a finished one is never read again.

The database's side (opening the readers in one snapshot, a chunk's query, where to cut a table) is the engine's:
`streams/cdc/pgsnapshot.py`, `streams/cdc/mysnapshot.py`."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, Self

from streams.cdc.envelope import change_record
from streams.cdc.metrics import CdcMetrics
from streams.cdc.progress import SnapshotProgressStore
from streams.records import Record

Row = dict[str, Any]
PROGRESS_EVERY_S = 10.0
_QUEUED_PER_READER = 2  # chunks read ahead per reader: memory stays at a few chunks


@dataclass(frozen=True)
class TablePart:
    """A table read in key order (`table` as records name it), or a part of it: its rows with
    low <= first key column < high. Engines add what their queries need."""

    table: str
    key: tuple[str, ...]
    estimated_rows: int
    part: int | None = None
    low: Any = None
    high: Any = None

    @property
    def name(self) -> str:
        """What the snapshot's saved progress calls it: the table, or the table and its part."""
        return self.table if self.part is None else f"{self.table}#{self.part}"

    def parts(self, bounds: Sequence[Any]) -> list[Self]:
        """The table cut at `bounds` (values of its first key column, ascending): len(bounds) + 1 parts."""
        if not bounds:
            return [self]
        edges: list[Any] = [None, *bounds, None]
        return [replace(self, part=i, low=edges[i], high=edges[i + 1]) for i in range(len(bounds) + 1)]


class ChunkReader(Protocol):
    """One reader's connection, inside the snapshot; used by one thread at a time."""

    def read(self, part: Any, after: list[Any] | None, limit: int) -> tuple[list[Row], list[Any] | None]:
        """Up to `limit` rows of `part` after the key `after` (None: from its start), in key order, and the key of
        the last one as the saved progress keeps it (JSON values)."""
        ...

    def cancel(self) -> None:
        """Stop a query in progress (called from another thread), if the driver can."""
        ...

    def close(self) -> None: ...


Cutter = Callable[[Any, int], list[Any]]  # (table, parts) → values of its first key column that cut it evenly


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    """A row the snapshot read, as the change `streams.cdc.envelope.change_record` writes: `op=r`, no transaction."""

    table: str
    key: Row
    after: Row
    op: str = "r"
    before: None = None
    unchanged: tuple[str, ...] = ()
    seq: int = 0
    last: bool = False


@dataclass
class Chunk:
    """What a reader read: rows of one part, where the part then stands, or the error that stopped the reader."""

    plan: TablePart | None = None
    rows: list[Row] | None = None
    after: list[Any] | None = None
    done: bool = False
    error: BaseException | None = None


class PartsProgress:
    """The snapshot's saved state: how its tables were cut, the parts finished, the last key read of the others.

    `{"bounds": {table: [values]}, "finished": [part], "after": {part: [key values]}, "done": bool}`; a state saved
    before tables were cut (`"after"` a list, for the one table then in progress) reads as the same progress."""

    def __init__(self, plans: Sequence[TablePart], state: dict[str, Any] | None) -> None:
        state = state or {}
        self.bounds: dict[str, list[Any]] | None = state.get("bounds")
        if state and self.bounds is None:
            self.bounds = {}  # an earlier snapshot that read each table whole
        self.finished: list[str] = list(state.get("finished", []))
        after = state.get("after")
        if isinstance(after, list):
            current = next((p for p in plans if p.name not in self.finished), None)
            after = {current.name: after} if current is not None else {}
        self.after: dict[str, list[Any]] = dict(after or {})
        self.parts: list[TablePart] = []

    def cut(self, plans: Sequence[TablePart], bounds: dict[str, list[Any]]) -> None:
        self.bounds = bounds
        self.parts = [part for plan in plans for part in plan.parts(bounds.get(plan.table, []))]

    @property
    def left(self) -> list[TablePart]:
        return [p for p in self.parts if p.name not in self.finished]

    def advance(self, chunk: Chunk) -> None:
        assert chunk.plan is not None
        name = chunk.plan.name
        if chunk.done:
            self.finished.append(name)
            self.after.pop(name, None)
        elif chunk.after is not None:
            self.after[name] = chunk.after

    def state(self) -> dict[str, Any]:
        return {"bounds": self.bounds, "finished": list(self.finished), "after": dict(self.after),
                "done": not self.left}


class InitialSnapshot:
    def __init__(self, store: SnapshotProgressStore, metrics: CdcMetrics, log: Any, chunk: int = 5000) -> None:
        self.store = store
        self.metrics = metrics
        self.log = log
        self._chunk = chunk
        self._readers: list[ChunkReader] = []
        self._threads: list[threading.Thread] = []
        self._work: queue.SimpleQueue[tuple[TablePart, list[Any] | None]] = queue.SimpleQueue()
        self._chunks: queue.Queue[Chunk] = queue.Queue()
        self._stop = threading.Event()
        self._progress: PartsProgress | None = None
        self._pending: list[Record] = []  # the rest of a chunk larger than a poll's batch
        self._version = 0
        self._source: dict[str, Any] = {}
        self._emitted = 0
        self._acked = 0
        self._marks: deque[tuple[int, dict[str, Any]]] = deque()  # (records emitted after a chunk, state then)
        self._rows = 0
        self._started = 0.0
        self._last_report = 0.0
        self._estimated = 0

    @property
    def reading(self) -> bool:
        return self._progress is not None and (bool(self._progress.left) or bool(self._pending))

    def begin(self, readers: Sequence[ChunkReader], cut: Cutter, version: int, source: dict[str, Any],
              plans: Sequence[TablePart], state: dict[str, Any] | None, at: str) -> None:
        """Start `readers` (already inside one snapshot at log position `version`, described by `at` and by
        `source`, the records' `source` field) on the parts left by `state`; a new snapshot first cuts each table
        into as many parts as there are readers (`cut`, on the first reader's connection, in the snapshot)."""
        progress = PartsProgress(plans, state)
        bounds = progress.bounds
        if bounds is None:
            bounds = {p.table: cut(p, len(readers)) for p in plans} if len(readers) > 1 else {}
        progress.cut(plans, bounds)
        self._progress = progress
        self._version, self._source = version, {**source, "snapshot": True}
        self._readers = list(readers)
        self._chunks = queue.Queue(maxsize=len(readers) * _QUEUED_PER_READER)
        left = progress.left
        for part in left:
            self._work.put((part, progress.after.get(part.name)))
        self._estimated = sum(p.estimated_rows for p in plans if any(part.table == p.table for part in left))
        self.metrics.snapshot_rows_expected.set(self._estimated)
        self._started = self._last_report = time.monotonic()
        self.log.info("%s the initial snapshot at %s with %d reader%s: %s", "resuming" if state else "starting",
                      at, len(readers), "s" if len(readers) != 1 else "",
                      ", ".join(dict.fromkeys(p.table for p in left)))
        for reader in self._readers:
            thread = threading.Thread(target=self._read_parts, args=(reader,), daemon=True,
                                      name="tuneflow-cdc-snapshot")
            thread.start()
            self._threads.append(thread)

    def _read_parts(self, reader: ChunkReader) -> None:
        """A reader: takes parts until none is left, and queues each chunk it reads of them."""
        try:
            while not self._stop.is_set():
                try:
                    part, after = self._work.get_nowait()
                except queue.Empty:
                    return
                while not self._stop.is_set():
                    rows, last = reader.read(part, after, self._chunk)
                    done = len(rows) < self._chunk
                    after = None if done else last
                    self._hand(Chunk(part, rows, after, done))
                    if done:
                        break
        except BaseException as exc:  # handed to the source's thread, which reports it and starts again
            self._hand(Chunk(error=exc))

    def _hand(self, chunk: Chunk) -> None:
        while not self._stop.is_set():
            try:
                self._chunks.put(chunk, timeout=0.2)
                return
            except queue.Full:
                continue

    def read(self, limit: int, timeout_s: float) -> list[Record]:
        """Up to `limit` snapshot records, waiting at most `timeout_s` for a reader's next chunk."""
        assert self._progress is not None
        if not self._pending:
            try:
                chunk = self._chunks.get(timeout=timeout_s)
            except queue.Empty:
                return []
            if chunk.error is not None:
                raise chunk.error
            assert chunk.plan is not None and chunk.rows is not None
            self._progress.advance(chunk)
            self._pending = self._records(chunk.plan, chunk.rows)
            self._marks.append((self._emitted + len(self._pending), self._progress.state()))
            self._rows += len(self._pending)
            self.metrics.snapshot_rows.inc(len(self._pending))
            self._report()
        records, self._pending = self._pending[:limit], self._pending[limit:]
        self._emitted += len(records)
        if not records:
            self.acked(0)  # an empty last chunk is durable at once
        return records

    def acked(self, count: int) -> int:
        """`count` more records are durable downstream: save the progress of every chunk whose records all are.
        Returns how many of them were not the snapshot's (changes that followed it)."""
        taken = min(count, self._emitted - self._acked)
        self._acked += taken
        state = None
        while self._marks and self._marks[0][0] <= self._acked:
            state = self._marks.popleft()[1]
        if state is not None:
            self.store.save(state)
            if state["done"]:
                self._finish()
        return count - taken

    def _records(self, plan: TablePart, rows: list[Row]) -> list[Record]:
        key, version, source, table = plan.key, self._version, self._source, plan.table
        return [change_record(SnapshotRow(table, {name: row[name] for name in key}, row), version, source)
                for row in rows]

    def _report(self) -> None:
        now = time.monotonic()
        rate = self._rows / max(now - self._started, 1e-9)
        left = max(self._estimated - self._rows, 0)
        eta = left / rate if self.reading and rate > 0 else 0.0
        self.metrics.snapshot_rate.set(rate)
        self.metrics.snapshot_eta_seconds.set(eta)
        if self.reading and now - self._last_report < PROGRESS_EVERY_S:
            return
        self._last_report = now
        self.log.info("snapshot: %d rows read, %.0f rows/s%s", self._rows, rate,
                      f", about {eta:.0f}s left" if self.reading and rate > 0 else " (all read)")

    def _finish(self) -> None:
        elapsed = time.monotonic() - self._started
        self.log.info("initial snapshot finished and durable: %d rows in this run in %.1fs (%.0f rows/s)",
                      self._rows, elapsed, self._rows / max(elapsed, 1e-9))
        self.metrics.snapshot_eta_seconds.set(0)
        self.close()

    def close(self) -> None:
        self._stop.set()
        for reader in self._readers:
            reader.cancel()  # a reader in the middle of a chunk query
        for thread in self._threads:
            thread.join(10)
        for reader in self._readers:
            reader.close()
        self._readers, self._threads = [], []
        self.store.close()
