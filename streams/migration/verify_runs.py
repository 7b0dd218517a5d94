"""Verify runs and their range checkpoints in the platform state: what `verify resume` goes on from, what
`verify status` shows from any shell, and the verdict a go/no-go gate asks for (`latest_clean_verify`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update

from streams.catalog.dburl import mask_password
from streams.errors import ConfigError
from streams.migration.runs import ChunkedRuns, ChunkPlan, chunk_tally, process_alive
from streams.migration.verify import CollectionDiff, Difference
from streams.state.models import MigrationStatus, VerifyRange, VerifyRun, utcnow
from streams.state.store import StateStore

KEEP_KEYS = 1000
MIGRATION_KEY = "migration"  # in a run's options: the migration whose gate counts it


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


class VerifyRuns(ChunkedRuns):
    """The `verify_runs` and `verify_ranges` tables: a run's ranges are its chunks."""

    run_model = VerifyRun
    chunk_model = VerifyRange
    noun = "verify run"
    commands = "verify"
    start = "tuneflow verify --source … --target … --template …"

    def get(self, run_id: str) -> VerifyRun:
        with self._session() as session:
            row: VerifyRun = self._row(session, run_id)
            return row

    def finished(self, run_id: str, chunk: ChunkPlan, diff: CollectionDiff, *, rows: int,
                 position: int | None) -> None:
        with self._session(write=True) as session:
            session.execute(update(VerifyRange).where(*self._chunk_key(run_id, chunk)).values(
                done=True, rows=rows, source_documents=diff.source_documents,
                target_documents=diff.target_documents, missing=diff.missing, extra=diff.extra,
                different=diff.different, rejected=diff.rejected, mismatched=diff.ranges_mismatched,
                findings=diff.findings() if not diff.ok or diff.cleared else None, position=position,
                finished_at=utcnow()))

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
                                               for s in findings["samples"]], cleared=findings.get("cleared", 0))
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

    def latest_clean_of_migration(self, migration: str) -> datetime | None:
        query = select(VerifyRun).where(VerifyRun.status == MigrationStatus.FINISHED)
        with self._session() as session:
            for run in session.scalars(query.order_by(VerifyRun.finished_at.desc())):
                if run.options.get(MIGRATION_KEY) == migration and run.options.get("since") is None:
                    return _aware(run.finished_at) if run.ok else None  # a newer run found differences
        return None

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


def clean_verify_of_migration(state: StateStore, migration: str) -> datetime | None:
    """When the newest full verify run for `migration` (`verify --migration NAME`) finished, if it was clean; None
    when there is none or the newest found differences. The switch's go/no-go gate asks this."""
    return VerifyRuns(state).latest_clean_of_migration(migration)


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


def _aware(moment: datetime | None) -> datetime | None:
    """A stored time (UTC, naive where the database keeps no zone) as an aware datetime."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
