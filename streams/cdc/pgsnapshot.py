"""A running initial snapshot: readers on their own connections import a slot's exported snapshot and read the tables'
parts side by side in key-ordered chunks; the chunks are handed out as `op=r` records versioned with the snapshot's
LSN, and the progress is saved once a chunk's rows are durable, so an interrupted snapshot resumes after its last
durable chunks and a finished one is never read again."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg2  # type: ignore[import-untyped]

from streams.cdc.changes import Change
from streams.cdc.envelope import change_record
from streams.cdc.metrics import CdcMetrics
from streams.cdc.progress import SnapshotProgressStore
from streams.cdc.snapshot import Row, SnapshotCursor, TablePlan, part_bounds
from streams.records import Record

PROGRESS_EVERY_S = 10.0
_NO_TIME = datetime(2000, 1, 1, tzinfo=UTC)  # a snapshot row has no commit time; the record leaves it out
_QUEUED_PER_READER = 2  # chunks read ahead per reader: memory stays at a few chunks


@dataclass
class _Chunk:
    """What a reader read: rows of one part, where the part then stands, or the error that stopped the reader."""

    plan: TablePlan | None = None
    rows: list[Row] | None = None
    after: list[str] | None = None
    done: bool = False
    error: BaseException | None = None


class PartsProgress:
    """The snapshot's saved state: how its tables were cut, the parts finished, the last key read of the others.

    `{"bounds": {table: [values]}, "finished": [part], "after": {part: [key texts]}, "done": bool}`; a state saved
    before tables were cut (`"after"` a list, for the one table then in progress) reads as the same progress."""

    def __init__(self, plans: list[TablePlan], state: dict[str, Any] | None) -> None:
        state = state or {}
        self.bounds: dict[str, list[str]] | None = state.get("bounds")
        if state and self.bounds is None:
            self.bounds = {}  # an earlier snapshot that read each table whole
        self.finished: list[str] = list(state.get("finished", []))
        after = state.get("after")
        if isinstance(after, list):
            current = next((p for p in plans if p.name not in self.finished), None)
            after = {current.name: after} if current is not None else {}
        self.after: dict[str, list[str]] = dict(after or {})
        self.parts: list[TablePlan] = []

    def cut(self, plans: list[TablePlan], bounds: dict[str, list[str]]) -> None:
        self.bounds = bounds
        self.parts = [part for plan in plans for part in plan.parts(bounds.get(str(plan.table), []))]

    @property
    def left(self) -> list[TablePlan]:
        return [p for p in self.parts if p.name not in self.finished]

    def advance(self, chunk: _Chunk) -> None:
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
    def __init__(self, connect_args: dict[str, Any], store: SnapshotProgressStore, metrics: CdcMetrics,
                 log: Any, readers: int = 1, chunk: int = 5000) -> None:
        self.store = store
        self.metrics = metrics
        self.log = log
        self._args = connect_args
        self._readers = readers
        self._chunk = chunk
        self._connections: list[Any] = []
        self._threads: list[threading.Thread] = []
        self._work: queue.SimpleQueue[SnapshotCursor] = queue.SimpleQueue()
        self._chunks: queue.Queue[_Chunk] = queue.Queue(maxsize=readers * _QUEUED_PER_READER)
        self._stop = threading.Event()
        self._progress: PartsProgress | None = None
        self._pending: list[Record] = []  # the rest of a chunk larger than a poll's batch
        self._version = 0
        self._marks: deque[tuple[int, dict[str, Any]]] = deque()  # (records emitted after a chunk, state then)
        self._rows = 0
        self._started = 0.0
        self._last_report = 0.0
        self._estimated = 0

    @property
    def reading(self) -> bool:
        return self._progress is not None and (bool(self._progress.left) or bool(self._pending))

    def begin(self, snapshot_name: str, version: int, plans: list[TablePlan], state: dict[str, Any] | None) -> None:
        """Import the exported snapshot on every reader's connection (before its exporter runs another command),
        cut the tables (or take the cut of the snapshot being resumed) and start the readers from `state`."""
        for _ in range(self._readers):
            connection = psycopg2.connect(**self._args, application_name="tuneflow-cdc-snapshot")
            self._connections.append(connection)
            connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION SNAPSHOT %s", (snapshot_name,))
        progress = PartsProgress(plans, state)
        bounds = progress.bounds
        if bounds is None:
            with self._connections[0].cursor() as cursor:
                bounds = {str(p.table): part_bounds(cursor, p, self._readers) for p in plans}
        progress.cut(plans, bounds)
        self._progress = progress
        self._version = version
        left = progress.left
        for part in left:
            self._work.put(SnapshotCursor([part], [], progress.after.get(part.name)))
        self._estimated = sum(p.estimated_rows for p in plans if any(part.table == p.table for part in left))
        self._started = self._last_report = time.monotonic()
        self.log.info("%s the initial snapshot (version %d) with %d reader%s: %s", "resuming" if state else "starting",
                      version, self._readers, "s" if self._readers != 1 else "",
                      ", ".join(dict.fromkeys(str(p.table) for p in left)))
        for connection in self._connections:
            thread = threading.Thread(target=self._read_parts, args=(connection,), daemon=True,
                                      name="tuneflow-cdc-snapshot")
            thread.start()
            self._threads.append(thread)

    def _read_parts(self, connection: Any) -> None:
        """A reader: takes parts until none is left, and queues each chunk it reads of them."""
        try:
            while not self._stop.is_set():
                try:
                    part = self._work.get_nowait()
                except queue.Empty:
                    return
                plan = part.plans[0]
                while not self._stop.is_set():
                    with connection.cursor() as cursor:
                        chunk = part.read_chunk(cursor, self._chunk)
                    self._hand(_Chunk(plan, chunk[1] if chunk else [], part.after, part.done))
                    if part.done:
                        break
        except BaseException as exc:  # handed to the source's thread, which reports it and reconnects
            self._hand(_Chunk(error=exc))

    def _hand(self, chunk: _Chunk) -> None:
        while not self._stop.is_set():
            try:
                self._chunks.put(chunk, timeout=0.2)
                return
            except queue.Full:
                continue

    def read(self, limit: int, timeout_s: float, emitted_before: int) -> list[Record]:
        """Up to `limit` snapshot records, waiting at most `timeout_s` for a reader's next chunk; `emitted_before`
        counts the records the source emitted before them."""
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
            self._pending = [self._record(chunk.plan, row) for row in chunk.rows]
            self._marks.append((emitted_before + len(self._pending), self._progress.state()))
            self._rows += len(self._pending)
            self.metrics.snapshot_rows.inc(len(self._pending))
            self._report()
        records, self._pending = self._pending[:limit], self._pending[limit:]
        return records

    def acked(self, acked_total: int) -> None:
        """Save the progress of every chunk whose records are all durable now."""
        state = None
        while self._marks and self._marks[0][0] <= acked_total:
            state = self._marks.popleft()[1]
        if state is not None:
            self.store.save(state)
            if state["done"]:
                self._finish()

    def _record(self, plan: TablePlan, row: dict[str, Any]) -> Record:
        key = {name: row[name] for name in plan.key}
        change = Change("r", str(plan.table), key, None, row, self._version, 0, _NO_TIME)
        return change_record(change, self._version, {"lsn": self._version, "snapshot": True})

    def _report(self) -> None:
        now = time.monotonic()
        if self.reading and now - self._last_report < PROGRESS_EVERY_S:
            return
        self._last_report = now
        rate = self._rows / max(now - self._started, 1e-9)
        left = max(self._estimated - self._rows, 0)
        self.log.info("snapshot: %d rows read, %.0f rows/s%s", self._rows, rate,
                      f", about {left / rate:.0f}s left" if self.reading and rate > 0 else " (all read)")

    def _finish(self) -> None:
        self.log.info("initial snapshot finished and durable: %d rows in this run", self._rows)
        self.close()

    def close(self) -> None:
        self._stop.set()
        for connection in self._connections:
            with contextlib.suppress(psycopg2.Error):
                connection.cancel()  # a reader in the middle of a chunk query
        for thread in self._threads:
            thread.join(10)
        for connection in self._connections:
            with contextlib.suppress(psycopg2.Error):
                connection.close()
        self._connections, self._threads = [], []
        self.store.close()
