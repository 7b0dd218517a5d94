"""How `migrate` and `verify` show their runs: one run in full (`status`), every run on one line each (`list`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import click

from streams.state import open_state
from streams.state.models import MigrationStatus


class RunView(Protocol):
    def as_json(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=RunView)


class Runs(Protocol[R]):
    def progress(self, run_id: str) -> R: ...

    def latest(self) -> str: ...

    def ids(self) -> list[str]: ...


RESUMABLE = ("stopped", MigrationStatus.INTERRUPTED, MigrationStatus.FAILED)


def add_run_commands(group: click.Group, runs: Callable[[Any], Runs[R]], *, status_help: str, list_help: str,
                     text: Callable[[R], str], line: Callable[[R], str], none: str) -> None:
    """`status [ID]` (one run in full; the latest by default) and `list` (every run, a line each) on `group`."""

    @group.command("status", help=status_help)
    @click.argument("run_id", metavar="[ID]", required=False)
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    def status(run_id: str | None, as_json: bool) -> None:
        with open_state() as state:
            found = runs(state)
            progress = found.progress(run_id or found.latest())
        click.echo(json.dumps(progress.as_json(), indent=2) if as_json else text(progress))

    @group.command("list", help=list_help)
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    def list_runs(as_json: bool) -> None:
        with open_state() as state:
            found = runs(state)
            every = [found.progress(run_id) for run_id in found.ids()]
        if as_json:
            click.echo(json.dumps([p.as_json() for p in every], indent=2))
            return
        click.echo("\n".join(line(p) for p in every) if every else none)


def counts_line(what: str, done: int, total: int, rows_done: int, rows_planned: int) -> str:
    share = 100 * rows_done / rows_planned if rows_planned else 100.0
    return f"  {what} {done:,}/{total:,}, rows {rows_done:,}/{rows_planned:,} ({share:.0f}%)"


def tail_lines(rows_per_second: float | None, eta_seconds: float | None, error: str | None, status: str,
               resume: str) -> list[str]:
    """The rate and ETA while it runs, its error, and how to resume it when it can be."""
    lines = []
    if rows_per_second:
        eta = f", ETA {eta_seconds:,.0f}s" if eta_seconds is not None else ""
        lines.append(f"  {rows_per_second:,.0f} rows/s{eta}")
    if error:
        lines.append(f"  error: {error}")
    if status in RESUMABLE:
        lines.append(f"  resume with: {resume}")
    return lines
