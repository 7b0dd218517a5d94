"""`tuneflow migrate …`: a resumable, parallel backfill of a template's documents from one source snapshot."""

from __future__ import annotations

import threading
from typing import Any

import click

from streams.catalog.dburl import mask_password
from streams.cli.migration_options import collection_names, password_options, source_and_target, with_password
from streams.cli.progress import Progress
from streams.cli.run_views import add_run_commands, counts_line, tail_lines
from streams.errors import ConfigError
from streams.migration.backfill import MigrateReport, MigrationJob, plan_chunks, rebind_template
from streams.migration.runs import MigrationRuns, RunProgress
from streams.migration.snapshot import open_snapshot
from streams.migration.source import BoundTemplate, load_bound, open_source, source_errors
from streams.state import open_state
from streams.state.models import MigrationStatus
from streams.stores.base import DocumentStore, checked_name
from streams.stores.factory import open_store


@click.group("migrate")
def migrate() -> None:
    """Move a relational schema into documents through a template: start, resume, status, list, cancel."""


@migrate.command("start")
@source_and_target
@click.option("--parallel", default=2, show_default=True, type=click.IntRange(1, 64), help="Parallel readers.")
@click.option("--chunk-rows", default=5000, show_default=True, type=click.IntRange(1, 10_000_000),
              help="Root rows per key-range chunk (the unit of checkpoints).")
@click.option("--throttle", type=click.FloatRange(min=1), default=None, metavar="ROWS_PER_S",
              help="At most this many rows per second in all.")
def start(source: str, target: str, template_path: str, collections: tuple[str, ...], database: str, parallel: int,
          chunk_rows: int, throttle: float | None) -> None:
    """Read one consistent snapshot of SOURCE through the template and write its documents to TARGET."""
    checked_name("database", database)
    engine, bound = load_bound(template_path, source, collection_names(collections))  # exit 2 before any write
    try:
        probe = open_store(target, database)
        try:
            probe.count(bound.collections[0].name)  # an unreachable target fails here, before a run is recorded
        finally:
            probe.close()
        with open_state() as state:
            runs = MigrationRuns(state)
            run_id = runs.create(template_path=template_path, template_text=bound.template.text, source_url=source,
                                 target_url=target, database=database,
                                 collections=[c.name for c in bound.collections],
                                 options={"parallel": parallel, "chunk_rows": chunk_rows, "throttle": throttle})
            click.echo(f"migration {run_id}: {mask_password(source)} → {mask_password(target)} ({database}), "
                       f"{', '.join(c.name for c in bound.collections)}", err=True)
            with source_errors(source):
                snapshot = open_snapshot(engine)
                try:
                    with snapshot.reader() as (conn, _version):
                        chunks = [chunk for reader in bound.readers.values()
                                  for chunk in plan_chunks(conn, reader, chunk_rows)]
                    runs.plan(run_id, chunks, snapshot.describe())
                    report = _execute(runs, run_id, bound, snapshot, target, database, parallel, throttle)
                finally:
                    snapshot.close()
    finally:
        engine.dispose()
    _summary(run_id, report)


@migrate.command("resume")
@click.argument("run_id", metavar="ID")
@click.option("--parallel", type=click.IntRange(1, 64), default=None, help="Parallel readers [default: as started].")
@click.option("--throttle", type=click.FloatRange(min=1), default=None, metavar="ROWS_PER_S",
              help="At most this many rows per second [default: as started].")
@password_options
def resume(run_id: str, parallel: int | None, throttle: float | None, source_password: str | None,
           target_password: str | None) -> None:
    """Go on with migration ID from a new snapshot, skipping every chunk it finished.

    The run keeps its URLs without passwords: give them with --source-password / --target-password or
    TUNEFLOW_SOURCE_PASSWORD / TUNEFLOW_TARGET_PASSWORD (asked for on a terminal).
    """
    with open_state() as state:
        runs = MigrationRuns(state)
        run = runs.get(run_id)
        if run.status == MigrationStatus.FINISHED:
            click.echo(f"migration {run_id} is already finished", err=True)
            return
        if run.status == MigrationStatus.CANCELLED:
            raise ConfigError(f"migration {run_id} was cancelled; start a new one with `tuneflow migrate start`")
        source = with_password(run.source_url, source_password, "source")
        target = with_password(run.target_url, target_password, "target")
        engine = open_source(source)
        try:
            with source_errors(source):
                bound = rebind_template(run.template_text, run.template_path, list(run.collections), engine)
                snapshot = open_snapshot(engine)
                try:
                    runs.begin(run_id, snapshot.describe())
                    options = dict(run.options)
                    report = _execute(runs, run_id, bound, snapshot, target, run.database,
                                      parallel or options.get("parallel", 2), throttle or options.get("throttle"))
                finally:
                    snapshot.close()
        finally:
            engine.dispose()
    _summary(run_id, report)


def _execute(runs: MigrationRuns, run_id: str, bound: BoundTemplate, snapshot: Any, target: str, database: str,
             parallel: int, throttle: float | None) -> MigrateReport:
    pending = runs.pending(run_id)
    total = sum(chunk.planned_rows for chunk in pending)

    def open_target() -> DocumentStore:
        return open_store(target, database)

    with Progress(f"migrate {run_id}", total) as progress:
        job = MigrationJob(runs, run_id, bound, snapshot, open_target, parallel=parallel, throttle=throttle,
                           on_rows=progress.update, stop=threading.Event())
        try:
            report = job.run()
        except KeyboardInterrupt:
            runs.end(run_id, MigrationStatus.INTERRUPTED, "interrupted")
            click.echo(f"interrupted: `tuneflow migrate resume {run_id}` goes on from the last finished chunk",
                       err=True)
            raise
        except BaseException as exc:
            runs.end(run_id, MigrationStatus.FAILED, str(exc)[:2000])
            raise
    runs.end(run_id, MigrationStatus(report.status))
    return report


def _summary(run_id: str, report: MigrateReport) -> None:
    rate = report.read / report.seconds if report.seconds else 0.0
    click.echo(f"migration {run_id} {report.status}: read {report.read:,} documents in {report.chunks:,} chunks, "
               f"written {report.written:,}, stale {report.stale:,}, rejected {len(report.rejected):,} "
               f"({report.seconds:.1f}s, {rate:,.0f} documents/s)")
    for key, reason in list(report.rejected.items())[:10]:
        click.echo(f"  rejected {key!r}: {reason}", err=True)


def _status_text(p: RunProgress) -> str:
    lines = [f"migration {p.id}: {p.status}",
             f"  {p.source} → {p.target} through {p.template}",
             counts_line("chunks", p.chunks_done, p.chunks, p.rows_done, p.rows_planned)]
    for name, item in p.per_collection.items():
        lines.append(f"  {name}: chunks {item['chunks_done']:,}/{item['chunks']:,}, "
                     f"rows {item['rows_done']:,}/{item['rows_planned']:,}")
    if p.snapshot:
        lines.append(f"  snapshot: {', '.join(f'{k} {v}' for k, v in p.snapshot.items() if k != 'snapshot')}")
    lines += tail_lines(p.rows_per_second, p.eta_seconds, p.error, p.status, f"tuneflow migrate resume {p.id}")
    return "\n".join(lines)


add_run_commands(migrate, MigrationRuns,
                 status_help="Chunks and rows done, rate and ETA of migration ID (default: the latest).",
                 list_help="Every migration run, oldest first.", text=_status_text,
                 line=lambda p: f"{p.id}  {p.status:<11}  {p.rows_done:>12,}/{p.rows_planned:<12,}  "
                                f"{p.created_at:%Y-%m-%d %H:%M}  {', '.join(p.collections)}",
                 none="no migrations yet")


@migrate.command("cancel")
@click.argument("run_id", metavar="ID")
def cancel(run_id: str) -> None:
    """Stop migration ID after the chunks in flight; it cannot be resumed."""
    with open_state() as state:
        MigrationRuns(state).cancel(run_id)
    click.echo(f"migration {run_id} cancelled")
