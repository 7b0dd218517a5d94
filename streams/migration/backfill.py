"""Backfill: a template's documents read from one snapshot in key-range chunks, in parallel, written guarded.

`plan_chunks` cuts each collection's key space into ranges of about `chunk_rows` root rows; `MigrationJob` reads
the pending ranges with parallel readers of one snapshot and writes them with the store's version-guarded `apply`,
each document versioned by the snapshot's change-log position, and checkpoints every finished range in the platform
state, so a resumed run never reads a finished range again.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from streams.errors import TuneflowError
from streams.migration.runs import ChunkPlan, MigrationRuns
from streams.migration.snapshot import Snapshot
from streams.migration.source import BoundTemplate, bind_template
from streams.migration.template import catalog_template_path, load_template, parse_template
from streams.migration.template_reader import CollectionReader, KeyRange, SourceDocument
from streams.state.models import MigrationStatus
from streams.stores.base import Change, DocumentStore
from streams.stores.embedded import EmbeddedStore

WRITE_BATCH = 1000


def plan_chunks(conn: Connection, reader: CollectionReader, chunk_rows: int) -> list[ChunkPlan]:
    """Key ranges (after, upto] of about `chunk_rows` root rows each, found by walking the key index."""
    chunks: list[ChunkPlan] = []
    after: Any = None
    while (upto := next_boundary(conn, reader, after, chunk_rows)) is not None:
        chunks.append(ChunkPlan(reader.collection.name, len(chunks), after, upto, chunk_rows))
        after = upto
    tail = select(func.count()).select_from(reader.key_column.table)
    key = reader.key_order(conn)
    rest = conn.execute(tail if after is None else tail.where(key > after)).scalar_one()
    if rest:
        chunks.append(ChunkPlan(reader.collection.name, len(chunks), after, None, int(rest)))
    return chunks


def next_boundary(conn: Connection, reader: CollectionReader, after: Any, chunk_rows: int) -> Any:
    """The key `chunk_rows` root rows after `after` (None: fewer are left)."""
    key = reader.key_order(conn)
    query = select(key).order_by(key).offset(chunk_rows - 1).limit(1)
    return conn.execute(query if after is None else query.where(key > after)).scalar()


class Pace:
    """At most `rows_per_second` across every reader (None: as fast as they go)."""

    def __init__(self, rows_per_second: float | None) -> None:
        self._rate = rows_per_second
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def take(self, rows: int, stop: threading.Event) -> None:
        if not self._rate:
            return
        with self._lock:
            now = time.monotonic()
            self._next = max(self._next, now) + rows / self._rate
            wait = self._next - now - rows / self._rate
        if wait > 0:
            stop.wait(wait)


@dataclass
class MigrateReport:
    read: int = 0
    written: int = 0
    stale: int = 0
    rejected: dict[Any, str] = field(default_factory=dict)
    chunks: int = 0
    seconds: float = 0.0
    status: str = MigrationStatus.RUNNING

    def add(self, other: MigrateReport) -> None:
        self.read += other.read
        self.written += other.written
        self.stale += other.stale
        self.chunks += other.chunks
        self.rejected.update(other.rejected)


def changes_of(documents: Iterator[SourceDocument], version: int | None,
               rejected: dict[Any, str]) -> Iterator[Change]:
    """Guarded changes of the documents: versioned by the snapshot's position, else by the template's columns."""
    for item in documents:
        if item.document is None:
            rejected[item.key] = item.error or "rejected"
            continue
        yield Change(key=item.key, version=item.version if version is None else version, document=item.document)


def write_range(conn: Connection, reader: CollectionReader, keys: KeyRange, store: DocumentStore, collection: str,
                version: int | None, lock: contextlib.AbstractContextManager[Any]) -> MigrateReport:
    """Read one key range through the template and write it in bulk batches."""
    report = MigrateReport(chunks=1)
    batch: list[Change] = []
    documents = reader.read(conn, keys)

    def flush() -> None:
        with lock:
            result = store.apply(collection, batch)
        report.written += result.applied
        report.stale += result.stale
        batch.clear()

    for change in changes_of(documents, version, report.rejected):
        batch.append(change)
        if len(batch) >= WRITE_BATCH:
            flush()
    if batch:
        flush()
    report.read = report.written + report.stale + len(report.rejected)
    return report


@dataclass
class MigrationJob:
    """The pending chunks of one run, read from `snapshot` by `parallel` readers and written to the target."""

    runs: MigrationRuns
    run_id: str
    bound: BoundTemplate
    snapshot: Snapshot
    open_target: Callable[[], DocumentStore]
    parallel: int = 2
    throttle: float | None = None
    on_rows: Callable[[int], None] = lambda _rows: None
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> MigrateReport:
        started = time.perf_counter()
        pending = self.runs.pending(self.run_id)
        work: queue.SimpleQueue[ChunkPlan] = queue.SimpleQueue()
        for chunk in pending:
            work.put(chunk)
        readers = 1 if self.snapshot.kind == "sqlite" else max(1, min(self.parallel, len(pending)))
        shared = self.open_target()
        serial = isinstance(shared, EmbeddedStore)  # one SQLite connection: writers take turns
        lock: contextlib.AbstractContextManager[Any] = threading.Lock() if serial else contextlib.nullcontext()
        pace = Pace(self.throttle)
        reports = [MigrateReport() for _ in range(readers)]
        errors: list[BaseException] = []
        watcher = threading.Thread(target=self._watch_cancel, daemon=True)
        watcher.start()

        imported = threading.Semaphore(0)  # one release per reader once it holds the snapshot (or failed to)

        def read_chunks(index: int) -> None:
            store = shared if serial or index == 0 else self.open_target()
            holding = False
            try:
                with self.snapshot.reader() as (conn, version):
                    imported.release()
                    holding = True
                    while not self.stop.is_set():
                        try:
                            chunk = work.get_nowait()
                        except queue.Empty:
                            return
                        self.runs.started(self.run_id, chunk)
                        report = write_range(conn, self.bound.readers[chunk.collection],
                                             KeyRange(chunk.after, chunk.upto), store, chunk.collection, version, lock)
                        self.runs.finished(self.run_id, chunk, rows=report.read, written=report.written,
                                           rejected=len(report.rejected), version=version)
                        reports[index].add(report)
                        self.on_rows(report.read)
                        pace.take(report.read, self.stop)
            except BaseException as exc:
                errors.append(exc)
                self.stop.set()
            finally:
                if not holding:
                    imported.release()
                if store is not shared:
                    store.close()

        threads = [threading.Thread(target=read_chunks, args=(n,), name=f"tf-migrate-{n}") for n in range(readers)]
        for thread in threads:
            thread.start()
        try:
            for _ in threads:
                imported.acquire()
            self.snapshot.release()  # every reader holds the snapshot: its exporter can go
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        except BaseException:
            self.stop.set()
            for thread in threads:
                thread.join()
            raise
        finally:
            shared.close()
        if errors:
            raise errors[0]
        total = MigrateReport()
        for report in reports:
            total.add(report)
        total.seconds = time.perf_counter() - started
        cancelled = self.runs.status_of(self.run_id) == MigrationStatus.CANCELLED
        total.status = MigrationStatus.CANCELLED if cancelled else MigrationStatus.FINISHED
        return total

    def _watch_cancel(self) -> None:
        while not self.stop.wait(1.0):
            with contextlib.suppress(TuneflowError):
                if self.runs.status_of(self.run_id) == MigrationStatus.CANCELLED:
                    self.stop.set()


def rebind_template(text: str, path: str, collections: list[str], engine: Engine) -> BoundTemplate:
    """A run's stored template, checked again against the source as it is now."""
    with engine.connect() as conn:
        return bind_template(parse_template(text, path), conn, collections)


# --- the single-collection backfill of the catalog's tracks, for callers without a run -----------------


BackfillReport = MigrateReport


def backfill_collection(engine: Engine, reader: CollectionReader, store: DocumentStore, collection: str | None = None,
                        chunk_rows: int = 5000, progress: Callable[[int], None] | None = None) -> BackfillReport:
    """Every document of one template collection, in key-range chunks on one connection, versioned by its columns."""
    report = BackfillReport()
    target = collection or reader.collection.name
    with engine.connect() as conn:
        for chunk in plan_chunks(conn, reader, chunk_rows):
            done = write_range(conn, reader, KeyRange(chunk.after, chunk.upto), store, target, None,
                               contextlib.nullcontext())
            report.add(done)
            if progress is not None:
                progress(done.read)
    return report


def backfill_tracks(engine: Engine, store: DocumentStore, collection: str = "tracks", batch_size: int = 1000,
                    progress: Callable[[int], None] | None = None) -> BackfillReport:
    """The catalog template's `tracks`, each versioned by its `updated_at` (no snapshot position: no run)."""
    with engine.connect() as conn:
        reader = bind_template(load_template(catalog_template_path()), conn, ["tracks"]).readers["tracks"]
    return backfill_collection(engine, reader, store, collection, chunk_rows=batch_size, progress=progress)

