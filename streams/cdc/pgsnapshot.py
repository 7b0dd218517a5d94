"""A running initial snapshot: imports a slot's exported snapshot on its own connection, hands out key-ordered chunks
as `op=r` records versioned with the snapshot's LSN, and saves its progress once a chunk's rows are durable, so an
interrupted snapshot resumes after its last durable chunk and a finished one is never read again."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import psycopg2  # type: ignore[import-untyped]

from streams.cdc.changes import Change
from streams.cdc.envelope import change_record
from streams.cdc.metrics import CdcMetrics
from streams.cdc.progress import SnapshotProgressStore
from streams.cdc.snapshot import SnapshotCursor, TablePlan
from streams.records import Record

PROGRESS_EVERY_S = 10.0
_NO_TIME = datetime(2000, 1, 1, tzinfo=UTC)  # a snapshot row has no commit time; the record leaves it out


class InitialSnapshot:
    def __init__(self, connect_args: dict[str, Any], store: SnapshotProgressStore, metrics: CdcMetrics,
                 log: Any) -> None:
        self.store = store
        self.metrics = metrics
        self.log = log
        self._args = connect_args
        self._connection: Any = None
        self._cursor: SnapshotCursor | None = None
        self._version = 0
        self._marks: deque[tuple[int, dict[str, Any]]] = deque()  # (records emitted after a chunk, state then)
        self._rows = 0
        self._started = 0.0
        self._last_report = 0.0
        self._estimated = 0

    @property
    def reading(self) -> bool:
        return self._cursor is not None and not self._cursor.done

    def begin(self, snapshot_name: str, version: int, plans: list[TablePlan], state: dict[str, Any] | None) -> None:
        """Import the exported snapshot (before its exporter runs another command) and continue from `state`."""
        self._connection = psycopg2.connect(**self._args, application_name="tuneflow-cdc-snapshot")
        self._connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with self._connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION SNAPSHOT %s", (snapshot_name,))
        self._version = version
        self._cursor = SnapshotCursor.from_state(plans, state)
        self._estimated = sum(p.estimated_rows for p in plans if str(p.table) not in self._cursor.finished)
        self._started = self._last_report = time.monotonic()
        self.log.info("%s the initial snapshot at LSN %d: %s", "resuming" if state else "starting", version,
                      ", ".join(str(p.table) for p in plans if str(p.table) not in self._cursor.finished))

    def read(self, limit: int, emitted_before: int) -> list[Record]:
        """The next chunk of rows as records; `emitted_before` counts the records the source emitted before them."""
        assert self._cursor is not None
        with self._connection.cursor() as cursor:
            chunk = self._cursor.read_chunk(cursor, limit)
        records = [] if chunk is None else [self._record(chunk[0], row) for row in chunk[1]]
        self._marks.append((emitted_before + len(records), self._cursor.state()))
        self._rows += len(records)
        self.metrics.snapshot_rows.inc(len(records))
        self._report()
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
        if self._connection is not None:
            with contextlib.suppress(psycopg2.Error):
                self._connection.close()
            self._connection = None
        self.store.close()
