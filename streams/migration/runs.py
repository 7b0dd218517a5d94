"""Migration runs and their chunk checkpoints in the platform state: what `migrate status` shows from any shell."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from streams.catalog.dburl import mask_password
from streams.errors import ConfigError
from streams.state.models import MigrationChunk, MigrationRun, MigrationStatus, utcnow
from streams.state.store import StateTables
from streams.suggest import did_you_mean


@dataclass(frozen=True)
class ChunkPlan:
    collection: str
    number: int
    after: Any
    upto: Any
    planned_rows: int


@dataclass(frozen=True)
class RunProgress:
    """A run as `migrate status` reports it: chunks and rows done of planned, rate and ETA since (re)start."""

    id: str
    status: str
    source: str
    target: str
    template: str
    collections: list[str]
    snapshot: dict[str, Any] | None
    chunks_done: int
    chunks: int
    rows_done: int
    rows_planned: int
    rows_per_second: float
    eta_seconds: float | None
    alive: bool
    error: str | None
    created_at: datetime
    per_collection: dict[str, dict[str, int]]

    def as_json(self) -> dict[str, Any]:
        plain = dict(self.__dict__)
        plain["created_at"] = self.created_at.isoformat()
        return plain


class ChunkedRuns(StateTables):
    """A table of runs and a table of their key-range chunks in the platform state, one transaction per call.

    Subclasses name their two models (`run_model` with id, status, pid, snapshot…; `chunk_model` keyed by run_id,
    collection and number, with after, upto, planned_rows, done, reads) and how a user names a run.
    """

    run_model: ClassVar[Any]
    chunk_model: ClassVar[Any]
    noun: ClassVar[str]
    commands: ClassVar[str]
    start: ClassVar[str]

    def create(self, *, template_path: str, template_text: str, source_url: str, target_url: str, database: str,
               collections: list[str], options: dict[str, Any]) -> str:
        """A new run; its URLs are kept without their passwords (`resume` is given them again)."""
        run_id = uuid.uuid4().hex[:12]
        with self._session(write=True) as session:
            session.add(self.run_model(id=run_id, template_path=template_path, template_text=template_text,
                                       source_url=mask_password(source_url), target_url=mask_password(target_url),
                                       database=database, collections=collections, options=options,
                                       status=MigrationStatus.PLANNING, pid=os.getpid()))
        return run_id

    def _row(self, session: Session, run_id: str) -> Any:
        row = session.get(self.run_model, run_id)
        if row is None:
            known = session.scalars(select(self.run_model.id)).all()
            raise ConfigError(f"unknown {self.noun} '{run_id}'.{did_you_mean(run_id, known)} "
                              f"See `tuneflow {self.commands} list`")
        return row

    def latest(self) -> str:
        with self._session() as session:
            found: str | None = session.scalar(select(self.run_model.id).order_by(self.run_model.created_at.desc())
                                               .limit(1))
        if found is None:
            raise ConfigError(f"no {self.noun} has run yet: start one with `{self.start}`")
        return found

    def ids(self) -> list[str]:
        with self._session() as session:
            return list(session.scalars(select(self.run_model.id).order_by(self.run_model.created_at)))

    def plan(self, run_id: str, chunks: Sequence[ChunkPlan], snapshot: dict[str, Any]) -> None:
        with self._session(write=True) as session:
            session.add_all(self.chunk_model(run_id=run_id, collection=c.collection, number=c.number, after=c.after,
                                             upto=c.upto, planned_rows=c.planned_rows) for c in chunks)
            row = self._row(session, run_id)
            row.snapshot = snapshot
            row.status = MigrationStatus.RUNNING

    def begin(self, run_id: str, snapshot: dict[str, Any]) -> None:
        """The run goes on in this process, from `snapshot`."""
        with self._session(write=True) as session:
            row = self._row(session, run_id)
            row.status, row.pid, row.error, row.started_at = MigrationStatus.RUNNING, os.getpid(), None, utcnow()
            row.snapshot = snapshot

    def pending(self, run_id: str) -> list[ChunkPlan]:
        model = self.chunk_model
        with self._session() as session:
            rows = session.scalars(select(model).where(model.run_id == run_id, model.done.is_(False))
                                   .order_by(model.collection, model.number)).all()
            return [ChunkPlan(r.collection, r.number, r.after, r.upto, r.planned_rows) for r in rows]

    def started(self, run_id: str, chunk: ChunkPlan) -> None:
        """Counts a read of the chunk before it begins: a chunk read twice shows `reads` 2."""
        with self._session(write=True) as session:
            session.execute(update(self.chunk_model).where(*self._chunk_key(run_id, chunk))
                            .values(reads=self.chunk_model.reads + 1))

    def chunk_reads(self, run_id: str) -> dict[tuple[str, int], tuple[bool, int]]:
        """(done, times read) of every chunk: the proof that a resumed run skipped what was finished."""
        model = self.chunk_model
        with self._session() as session:
            rows = session.execute(select(model.collection, model.number, model.done, model.reads)
                                   .where(model.run_id == run_id)).all()
        return {(c, n): (bool(d), int(r)) for c, n, d, r in rows}

    def _chunk_key(self, run_id: str, chunk: ChunkPlan) -> tuple[Any, ...]:
        model = self.chunk_model
        return (model.run_id == run_id, model.collection == chunk.collection, model.number == chunk.number)


class MigrationRuns(ChunkedRuns):
    """The `migration_runs` and `migration_chunks` tables: what `migrate status` shows from any shell."""

    run_model = MigrationRun
    chunk_model = MigrationChunk
    noun = "migration"
    commands = "migrate"
    start = "tuneflow migrate start"

    def get(self, run_id: str) -> MigrationRun:
        with self._session() as session:
            row: MigrationRun = self._row(session, run_id)
            return row

    def finished(self, run_id: str, chunk: ChunkPlan, *, rows: int, written: int, rejected: int,
                 version: int | None) -> None:
        with self._session(write=True) as session:
            session.execute(update(MigrationChunk).where(*self._chunk_key(run_id, chunk)).values(
                done=True, rows=rows, written=written, rejected=rejected, version=version, finished_at=utcnow()))

    def end(self, run_id: str, status: MigrationStatus, error: str | None = None) -> None:
        with self._session(write=True) as session:
            row = self._row(session, run_id)
            if row.status != MigrationStatus.CANCELLED:
                row.status = status
            row.error = error
            row.pid = None

    def cancel(self, run_id: str) -> str:
        with self._session(write=True) as session:
            row = self._row(session, run_id)
            if row.status in (MigrationStatus.FINISHED, MigrationStatus.CANCELLED):
                raise ConfigError(f"migration '{run_id}' is already {row.status}")
            row.status = MigrationStatus.CANCELLED
            return row.status

    def status_of(self, run_id: str) -> str:
        with self._session() as session:
            return self._row(session, run_id).status

    def progress(self, run_id: str) -> RunProgress:
        with self._session() as session:
            run = self._row(session, run_id)
            tally = chunk_tally(session, MigrationChunk, run_id, run.started_at)
        alive = run.pid is not None and process_alive(run.pid)
        running = run.status == MigrationStatus.RUNNING and alive
        status = run.status if run.status != MigrationStatus.RUNNING or alive else "stopped"
        return RunProgress(
            id=run.id, status=status, source=mask_password(run.source_url), target=mask_password(run.target_url),
            template=run.template_path, collections=list(run.collections), snapshot=run.snapshot,
            chunks_done=tally.chunks_done, chunks=tally.chunks, rows_done=tally.rows_done,
            rows_planned=tally.rows_planned, rows_per_second=tally.rate if running else 0.0,
            eta_seconds=tally.eta if running else None, alive=alive, error=run.error,
            created_at=run.created_at, per_collection=tally.per_collection,
        )


@dataclass(frozen=True)
class ChunkTally:
    """Chunks and rows done of planned, per collection and in all, and the rate since the run (re)started."""

    per_collection: dict[str, dict[str, int]]
    rate: float

    @property
    def chunks(self) -> int:
        return sum(item["chunks"] for item in self.per_collection.values())

    @property
    def chunks_done(self) -> int:
        return sum(item["chunks_done"] for item in self.per_collection.values())

    @property
    def rows_done(self) -> int:
        return sum(item["rows_done"] for item in self.per_collection.values())

    @property
    def rows_planned(self) -> int:
        return sum(item["rows_planned"] for item in self.per_collection.values())

    @property
    def eta(self) -> float | None:
        return (self.rows_planned - self.rows_done) / self.rate if self.rate > 0 else None


def chunk_tally(session: Session, model: Any, run_id: str, started_at: datetime) -> ChunkTally:
    """The tally of a run's chunk table (`model`: a table of chunks with collection, done, rows, planned_rows)."""
    totals = session.execute(
        select(model.collection, model.done, func.count(), func.sum(model.rows), func.sum(model.planned_rows))
        .where(model.run_id == run_id).group_by(model.collection, model.done)
    ).all()
    recent = session.execute(select(func.sum(model.rows)).where(
        model.run_id == run_id, model.done.is_(True), model.finished_at >= started_at)).scalar()
    per: dict[str, dict[str, int]] = {}
    for collection, done, count, rows, planned in totals:
        item = per.setdefault(collection, {"chunks": 0, "chunks_done": 0, "rows_done": 0, "rows_planned": 0})
        item["chunks"] += count
        item["rows_planned"] += int(rows or 0) if done else int(planned or 0)
        if done:
            item["chunks_done"] += count
            item["rows_done"] += int(rows or 0)
    elapsed = (utcnow() - started_at).total_seconds()
    return ChunkTally(per, float(recent or 0) / elapsed if elapsed > 0 else 0.0)


def process_alive(pid: int) -> bool:
    """Whether the process that recorded itself as running a job still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) is not running either.
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[-1][:1] != "Z"
    return True
