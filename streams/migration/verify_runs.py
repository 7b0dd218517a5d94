"""Verify runs and their range checkpoints in the platform state: what `verify resume` goes on from, what
`verify status` shows from any shell, and the verdict a go/no-go gate asks for (`latest_clean_verify`)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from streams.catalog.dburl import mask_password
from streams.errors import ConfigError
from streams.migration.runs import ChunkPlan, chunk_tally, process_alive
from streams.migration.verify import CollectionDiff, Difference
from streams.state.models import MigrationStatus, VerifyRange, VerifyRun, utcnow
from streams.state.store import StateStore, translate_errors, writer
from streams.suggest import did_you_mean

KEEP_KEYS = 1000


@dataclass(frozen=True)
class VerifyResult:
    """A verify run's verdict: `ok` is None until it finished; `position` is the oldest source position it read at."""

    id: str
    status: str
    ok: bool | None
    source: str
    target: str
    database: str
    collections: list[str]
    since: int | None
    position: int | None
    created_at: datetime
    finished_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        plain = dict(self.__dict__)
        plain["created_at"] = self.created_at.isoformat()
        plain["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        return plain


@dataclass(frozen=True)
class VerifyProgress:
    """A run as `verify status` reports it: ranges and rows done of planned, differences so far, rate and ETA."""

    result: VerifyResult
    template: str
    ranges_done: int
    ranges: int
    rows_done: int
    rows_planned: int
    missing: int
    extra: int
    different: int
    rows_per_second: float
    eta_seconds: float | None
    alive: bool
    error: str | None
    per_collection: dict[str, dict[str, int]]

    def as_json(self) -> dict[str, Any]:
        plain = {key: value for key, value in self.__dict__.items() if key != "result"}
        return {**self.result.as_json(), **plain}


class VerifyRuns:
    """The `verify_runs` and `verify_ranges` tables of the platform state, one transaction per call."""

    def __init__(self, state: StateStore) -> None:
        self._state = state
        self._writer = writer(state.engine)

    @contextlib.contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        bind = self._writer if write else self._state.engine
        with translate_errors(self._state.url), Session(bind, expire_on_commit=False) as session, session.begin():
            yield session

    def create(self, *, template_path: str, template_text: str, source_url: str, target_url: str, database: str,
               collections: list[str], options: dict[str, Any]) -> str:
        """A new run; its URLs are kept without their passwords (`verify resume` is given them again)."""
        run_id = uuid.uuid4().hex[:12]
        with self._session(write=True) as session:
            session.add(VerifyRun(id=run_id, template_path=template_path, template_text=template_text,
                                  source_url=mask_password(source_url), target_url=mask_password(target_url),
                                  database=database, collections=collections, options=options,
                                  status=MigrationStatus.PLANNING, pid=os.getpid()))
        return run_id

    def get(self, run_id: str) -> VerifyRun:
        with self._session() as session:
            return self._row(session, run_id)

    def _row(self, session: Session, run_id: str) -> VerifyRun:
        row = session.get(VerifyRun, run_id)
        if row is None:
            known = session.scalars(select(VerifyRun.id)).all()
            raise ConfigError(f"unknown verify run '{run_id}'.{did_you_mean(run_id, known)} "
                              "See `tuneflow verify list`")
        return row

    def latest(self) -> str:
        with self._session() as session:
            found = session.scalar(select(VerifyRun.id).order_by(VerifyRun.created_at.desc()).limit(1))
        if found is None:
            raise ConfigError("no verify has run yet: start one with `tuneflow verify --source … --target …`")
        return found

    def ids(self) -> list[str]:
        with self._session() as session:
            return list(session.scalars(select(VerifyRun.id).order_by(VerifyRun.created_at)))

    def plan(self, run_id: str, ranges: Sequence[ChunkPlan], snapshot: dict[str, Any]) -> None:
        with self._session(write=True) as session:
            session.add_all(VerifyRange(run_id=run_id, collection=r.collection, number=r.number, after=r.after,
                                        upto=r.upto, planned_rows=r.planned_rows) for r in ranges)
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
        with self._session() as session:
            rows = session.scalars(select(VerifyRange).where(VerifyRange.run_id == run_id,
                                                             VerifyRange.done.is_(False))
                                   .order_by(VerifyRange.collection, VerifyRange.number)).all()
            return [ChunkPlan(r.collection, r.number, r.after, r.upto, r.planned_rows) for r in rows]

    def started(self, run_id: str, chunk: ChunkPlan) -> None:
        """Counts a read of the range before it begins: a range compared twice shows `reads` 2."""
        with self._session(write=True) as session:
            session.execute(update(VerifyRange).where(*_range_key(run_id, chunk))
                            .values(reads=VerifyRange.reads + 1))

    def finished(self, run_id: str, chunk: ChunkPlan, diff: CollectionDiff, *, rows: int,
                 position: int | None) -> None:
        with self._session(write=True) as session:
            session.execute(update(VerifyRange).where(*_range_key(run_id, chunk)).values(
                done=True, rows=rows, source_documents=diff.source_documents,
                target_documents=diff.target_documents, missing=diff.missing, extra=diff.extra,
                different=diff.different, rejected=diff.rejected, mismatched=diff.ranges_mismatched,
                findings=diff.findings() if not diff.ok else None, position=position, finished_at=utcnow()))

    def end(self, run_id: str, status: MigrationStatus, error: str | None = None) -> None:
        """The run stops; once every range is done it is finished, with its verdict and the position it covered."""
        with self._session(write=True) as session:
            row = self._row(session, run_id)
            row.status, row.error, row.pid = status, error, None
            if status == MigrationStatus.FINISHED:
                found, left, lowest = session.execute(
                    select(func.sum(VerifyRange.missing + VerifyRange.extra + VerifyRange.different),
                           func.count().filter(VerifyRange.done.is_(False)), func.min(VerifyRange.position))
                    .where(VerifyRange.run_id == run_id)).one()
                if left:
                    raise ConfigError(f"verify run {run_id} has {left} ranges left: it cannot be finished")
                row.ok, row.position, row.finished_at = not found, lowest, utcnow()

    def diffs(self, run_id: str, sample: int, keep_keys: int = KEEP_KEYS) -> list[CollectionDiff]:
        """Every collection's differences, summed over its ranges in key order (finished ones only)."""
        run = self.get(run_id)
        diffs = {name: CollectionDiff(name) for name in run.collections}
        with self._session() as session:
            ranges = session.scalars(select(VerifyRange).where(VerifyRange.run_id == run_id,
                                                               VerifyRange.done.is_(True))
                                     .order_by(VerifyRange.collection, VerifyRange.number)).all()
            for item in ranges:
                findings = item.findings or {"keys": {}, "samples": []}
                part = CollectionDiff(item.collection, source_documents=item.source_documents,
                                      target_documents=item.target_documents, missing=item.missing, extra=item.extra,
                                      different=item.different, rejected=item.rejected, ranges=1,
                                      ranges_mismatched=item.mismatched,
                                      samples=[Difference(s["key"], s["kind"], s["fields"])
                                               for s in findings["samples"]])
                for kind, keys in findings["keys"].items():
                    part.keys[kind] = list(keys)
                diffs.setdefault(item.collection, CollectionDiff(item.collection)).add(part, sample, keep_keys)
        return list(diffs.values())

    def result(self, run_id: str) -> VerifyResult:
        return _result(self.get(run_id))

    def progress(self, run_id: str) -> VerifyProgress:
        with self._session() as session:
            run = self._row(session, run_id)
            tally = chunk_tally(session, VerifyRange, run_id, run.started_at)
            missing, extra, different = session.execute(
                select(func.coalesce(func.sum(VerifyRange.missing), 0), func.coalesce(func.sum(VerifyRange.extra), 0),
                       func.coalesce(func.sum(VerifyRange.different), 0)).where(VerifyRange.run_id == run_id)).one()
        alive = run.pid is not None and process_alive(run.pid)
        running = run.status == MigrationStatus.RUNNING and alive
        result = _result(run)
        if run.status == MigrationStatus.RUNNING and not alive:
            result = VerifyResult(**{**result.__dict__, "status": "stopped"})
        return VerifyProgress(
            result=result, template=run.template_path, ranges_done=tally.chunks_done, ranges=tally.chunks,
            rows_done=tally.rows_done, rows_planned=tally.rows_planned, missing=int(missing), extra=int(extra),
            different=int(different), rows_per_second=tally.rate if running else 0.0,
            eta_seconds=tally.eta if running else None, alive=alive, error=run.error,
            per_collection=tally.per_collection)

    def range_reads(self, run_id: str) -> dict[tuple[str, int], tuple[bool, int]]:
        """(done, times read) of every range: the proof that a resumed run skipped what was finished."""
        with self._session() as session:
            rows = session.execute(select(VerifyRange.collection, VerifyRange.number, VerifyRange.done,
                                          VerifyRange.reads).where(VerifyRange.run_id == run_id)).all()
        return {(c, n): (bool(d), int(r)) for c, n, d, r in rows}

    def latest_finished(self, source: str, target: str, collections: Sequence[str], *, database: str | None = None,
                        clean: bool = False, full: bool = True) -> VerifyResult | None:
        """The newest finished run comparing `source` with `target` over at least `collections` (see below)."""
        query = select(VerifyRun).where(VerifyRun.status == MigrationStatus.FINISHED,
                                        VerifyRun.source_url == mask_password(source),
                                        VerifyRun.target_url == mask_password(target))
        if database is not None:
            query = query.where(VerifyRun.database == database)
        if clean:
            query = query.where(VerifyRun.ok.is_(True))
        with self._session() as session:
            for run in session.scalars(query.order_by(VerifyRun.finished_at.desc())):
                if set(collections) <= set(run.collections) and not (full and run.options.get("since") is not None):
                    return _result(run)
        return None


def latest_clean_verify(state: StateStore, source: str, target: str, collections: Sequence[str], *,
                        database: str | None = None, newer_than: datetime | None = None,
                        at_position: int | None = None) -> VerifyResult | None:
    """The newest clean, full verify of `collections` from `source` to `target`, if it meets the bounds.

    For a go/no-go gate: None unless such a run finished after `newer_than` (when given) and read the source at
    `at_position` or later (when given: a change-log position, e.g. where the CDC catch-up stood). URLs match
    without their passwords. A `--since` run checks only changed documents, so it does not count here.
    """
    found = VerifyRuns(state).latest_finished(source, target, collections, database=database, clean=True)
    if found is None or found.finished_at is None:
        return None
    if newer_than is not None and found.finished_at <= newer_than:
        return None
    if at_position is not None and (found.position is None or found.position < at_position):
        return None
    return found


def _result(run: VerifyRun) -> VerifyResult:
    return VerifyResult(id=run.id, status=run.status, ok=run.ok, source=mask_password(run.source_url),
                        target=mask_password(run.target_url), database=run.database,
                        collections=list(run.collections), since=run.options.get("since"), position=run.position,
                        created_at=run.created_at, finished_at=run.finished_at)


def _range_key(run_id: str, chunk: ChunkPlan) -> tuple[Any, ...]:
    return (VerifyRange.run_id == run_id, VerifyRange.collection == chunk.collection,
            VerifyRange.number == chunk.number)

