"""`tuneflow verify`: the target holds exactly the documents the source gives through the template.

A verify is a run in the platform state, checkpointed range by range: `verify resume ID` goes on after a kill or
Ctrl-C without comparing finished ranges again; `verify status` and `verify list` show runs from any shell.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import click

from streams.catalog.dburl import mask_password
from streams.cli.errors import EXIT_FAILURE
from streams.cli.migration_options import collection_names, password_options, source_and_target, with_password
from streams.cli.progress import Progress
from streams.cli.run_views import add_run_commands, counts_line, tail_lines
from streams.migration.backfill import Pace, rebind_template
from streams.migration.recheck import Recheck
from streams.migration.runs import ChunkPlan
from streams.migration.snapshot import Snapshot, open_snapshot
from streams.migration.source import BoundTemplate, load_bound, open_source, source_errors
from streams.migration.switch_store import check_migration_name
from streams.migration.verify import CollectionDiff, RangeVerifier, plan_ranges
from streams.migration.verify_runs import MIGRATION_KEY, VerifyProgress, VerifyRuns
from streams.state import open_state
from streams.state.models import MigrationStatus
from streams.stores.base import checked_name
from streams.stores.factory import open_store

SINCE_KEY = "since"
RECHECK_KEY = "recheck_s"


@click.group("verify", invoke_without_command=True)
@source_and_target(required=False)
@click.option("--chunk-rows", default=5000, show_default=True, type=click.IntRange(2, 10_000_000),
              help="Source rows per hashed key range (the unit of checkpoints).")
@click.option("--sample", default=10, show_default=True, type=click.IntRange(0, 10_000),
              help="How many differences to show with a field-level diff.")
@click.option("--since", type=click.IntRange(0), default=None, metavar="VERSION",
              help="Re-check only the target documents written above this version (a CDC catch-up).")
@click.option("--throttle", type=click.FloatRange(min=1), default=None, metavar="ROWS_PER_S",
              help="At most this many source rows per second (spares a live source).")
@click.option("--recheck", "recheck_s", type=click.FloatRange(min=0), default=0, show_default=True,
              metavar="SECONDS",
              help="Writers still writing: read each differing key again on both sides for up to this long; a key "
                   "both sides are seen to agree on is cleared (counted as such).")
@click.option("--migration", metavar="NAME", default=None,
              help="The migration this verify is for: the switch's gate counts its clean, full runs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def verify(ctx: click.Context, source: str | None, target: str | None, template_path: str | None,
           collections: tuple[str, ...], database: str, chunk_rows: int, sample: int, since: int | None,
           throttle: float | None, recheck_s: float, migration: str | None, as_json: bool) -> int | None:
    """Compare SOURCE (through the template) with TARGET by key-range hashes; name missing, extra, different keys.

    Exit 0 when they match, 1 on any difference, 2 on bad input. `verify resume ID` goes on with a stopped run;
    `verify status` and `verify list` show runs.
    """
    if ctx.invoked_subcommand is not None:
        return None
    for name, value in (("--source", source), ("--target", target), ("--template", template_path)):
        if not value:
            raise click.UsageError(f"Missing option '{name}'.", ctx)
    assert source is not None and target is not None and template_path is not None
    checked_name("database", database)
    if migration is not None:
        check_migration_name(migration)
    engine, bound = load_bound(template_path, source, collection_names(collections))  # exit 2 before a run
    try:
        with open_state() as state:
            runs = VerifyRuns(state)
            run_id = runs.create(template_path=template_path, template_text=bound.template.text,
                                 source_url=source, target_url=target, database=database,
                                 collections=[c.name for c in bound.collections],
                                 options={"chunk_rows": chunk_rows, "sample": sample, SINCE_KEY: since,
                                          "throttle": throttle, RECHECK_KEY: recheck_s, MIGRATION_KEY: migration})
            click.echo(f"verify {run_id}: {mask_password(source)} → {mask_password(target)} ({database}), "
                       f"{', '.join(c.name for c in bound.collections)}", err=True)
            with source_errors(source):
                snapshot = open_snapshot(engine)
                try:
                    with snapshot.reader() as (conn, _version):
                        ranges = [chunk for reader in bound.readers.values()
                                  for chunk in (plan_ranges(conn, reader, chunk_rows) if since is None
                                                else [ChunkPlan(reader.collection.name, 0, None, None, 0)])]
                    runs.plan(run_id, ranges, snapshot.describe())
                    _execute(runs, run_id, bound, snapshot, target, database, sample, since, throttle, recheck_s)
                finally:
                    snapshot.close()
            return _report(runs, run_id, sample, as_json)
    finally:
        engine.dispose()


@verify.command("resume")
@click.argument("run_id", metavar="ID")
@password_options
@click.option("--throttle", type=click.FloatRange(min=1), default=None, metavar="ROWS_PER_S",
              help="At most this many source rows per second [default: as started].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def resume(run_id: str, source_password: str | None, target_password: str | None, throttle: float | None,
           as_json: bool) -> int:
    """Go on with verify run ID from a new snapshot, skipping every range it finished.

    The run keeps its URLs without passwords: give them with --source-password / --target-password or
    TUNEFLOW_SOURCE_PASSWORD / TUNEFLOW_TARGET_PASSWORD (asked for on a terminal).
    """
    with open_state() as state:
        runs = VerifyRuns(state)
        run = runs.get(run_id)
        if run.status == MigrationStatus.FINISHED:
            click.echo(f"verify {run_id} is already finished", err=True)
            return _report(runs, run_id, run.options.get("sample", 10), as_json)
        source = with_password(run.source_url, source_password, "source")
        target = with_password(run.target_url, target_password, "target")
        engine = open_source(source)
        try:
            with source_errors(source):
                bound = rebind_template(run.template_text, run.template_path, list(run.collections), engine)
                snapshot = open_snapshot(engine)
                try:
                    runs.begin(run_id, snapshot.describe())
                    _execute(runs, run_id, bound, snapshot, target, run.database, run.options.get("sample", 10),
                             run.options.get(SINCE_KEY), throttle or run.options.get("throttle"),
                             run.options.get(RECHECK_KEY) or 0)
                finally:
                    snapshot.close()
        finally:
            engine.dispose()
        return _report(runs, run_id, run.options.get("sample", 10), as_json)


def _execute(runs: VerifyRuns, run_id: str, bound: BoundTemplate, snapshot: Snapshot, target: str, database: str,
             sample: int, since: int | None, throttle: float | None, recheck_s: float) -> None:
    """Compare the run's pending ranges, checkpointing each; the run ends finished, interrupted or failed."""
    pending = runs.pending(run_id)
    pace, never = Pace(throttle), threading.Event()
    store = open_store(target, database)
    try:
        with Progress(f"verify {run_id}", sum(chunk.planned_rows for chunk in pending)) as progress, \
                snapshot.reader() as (conn, position):
            def on_rows(rows: int) -> None:
                progress.update(rows)
                pace.take(rows, never)

            for collection in bound.readers:
                ranges = [chunk for chunk in pending if chunk.collection == collection]
                if not ranges:
                    continue
                reader = bound.readers[collection]
                recheck = Recheck(snapshot.engine.connect, reader, store, collection, recheck_s) if recheck_s else None
                _compare(runs, run_id, RangeVerifier(conn, reader, store, collection, sample=sample, on_rows=on_rows),
                         ranges, position, since, recheck)
    except KeyboardInterrupt:
        runs.end(run_id, MigrationStatus.INTERRUPTED, "interrupted")
        click.echo(f"interrupted: `tuneflow verify resume {run_id}` goes on from the last finished range", err=True)
        raise
    except BaseException as exc:
        runs.end(run_id, MigrationStatus.FAILED, str(exc)[:2000])
        raise
    finally:
        store.close()
    runs.end(run_id, MigrationStatus.FINISHED)


def _compare(runs: VerifyRuns, run_id: str, verifier: RangeVerifier, ranges: list[ChunkPlan], position: int | None,
             since: int | None, recheck: Recheck | None) -> None:
    def settled(diff: CollectionDiff) -> CollectionDiff:
        return diff if recheck is None else recheck(diff)

    if since is not None:
        for chunk in ranges:
            runs.started(run_id, chunk)
            diff = settled(verifier.run_since(since))
            runs.finished(run_id, chunk, diff, rows=diff.target_documents, position=position)
        return

    def checkpoint(chunk: ChunkPlan, diff: CollectionDiff, rows: int) -> None:
        runs.finished(run_id, chunk, settled(diff), rows=rows, position=position)

    verifier.run_ranges(ranges, checkpoint, before=lambda chunk: runs.started(run_id, chunk))


def _report(runs: VerifyRuns, run_id: str, sample: int, as_json: bool) -> int:
    diffs = runs.diffs(run_id, sample)
    result = runs.result(run_id)
    ok = all(diff.ok for diff in diffs)
    if as_json:
        click.echo(json.dumps({"ok": ok, "id": run_id, **{k: v for k, v in result.as_json().items() if k != "ok"},
                               "collections": [_as_json(diff) for diff in diffs]}, indent=2, default=str))
    else:
        for diff in diffs:
            click.echo(_text(diff))
        click.echo("OK — the target matches the source" if ok else "DIFFERENT — see above")
    return 0 if ok else EXIT_FAILURE


def _as_json(diff: CollectionDiff) -> dict[str, Any]:
    return {
        "collection": diff.collection, "ok": diff.ok, "source_documents": diff.source_documents,
        "target_documents": diff.target_documents, "missing": diff.missing, "extra": diff.extra,
        "different": diff.different, "rejected": diff.rejected, "ranges": diff.ranges,
        "ranges_mismatched": diff.ranges_mismatched, **diff.findings(),
    }


def _text(diff: CollectionDiff) -> str:
    lines = [f"{diff.collection}: source {diff.source_documents:,}, target {diff.target_documents:,} — "
             f"missing {diff.missing:,}, extra {diff.extra:,}, different {diff.different:,}"
             + (f", rejected by the template {diff.rejected:,}" if diff.rejected else "")
             + f" ({diff.ranges:,} ranges, {diff.ranges_mismatched:,} differing)"
             + (f"; {diff.cleared:,} in flight during the pass, seen to agree on a recheck" if diff.cleared else "")]
    for sample in diff.samples:
        lines.append(f"  {sample.kind} {sample.key!r}")
        for item in sample.fields:
            lines.append(f"    {item['path']}: source {item['source']!r} ≠ target {item['target']!r}")
    return "\n".join(lines)


def _verdict(p: VerifyProgress) -> str:
    if p.result.ok is None:
        return p.result.status
    return f"{p.result.status}, {'clean' if p.result.ok else 'DIFFERENT'}"


def _status_text(p: VerifyProgress) -> str:
    r = p.result
    lines = [f"verify {r.id}: {_verdict(p)}",
             f"  {r.source} → {r.target} ({r.database}) through {p.template}",
             counts_line("ranges", p.ranges_done, p.ranges, p.rows_done, p.rows_planned),
             f"  so far: missing {p.missing:,}, extra {p.extra:,}, different {p.different:,}"]
    if r.finished_at is not None:
        lines.append(f"  finished {r.finished_at:%Y-%m-%d %H:%M:%S}Z, source position {r.position}")
    if r.since is not None:
        lines.append(f"  only documents written above version {r.since}")
    lines += tail_lines(p.rows_per_second, p.eta_seconds, p.error, r.status, f"tuneflow verify resume {r.id}")
    return "\n".join(lines)


add_run_commands(verify, VerifyRuns,
                 status_help="Ranges and rows done, differences so far, rate and ETA of verify run ID (default: the "
                             "latest).",
                 list_help="Every verify run, oldest first.", text=_status_text,
                 line=lambda p: f"{p.result.id}  {_verdict(p):<20}  {p.rows_done:>12,}/{p.rows_planned:<12,}  "
                                f"{p.result.created_at:%Y-%m-%d %H:%M}  {', '.join(p.result.collections)}",
                 none="no verify runs yet")
