"""How `migrate` and `verify` show their runs: one run in full (`status`), every run on one line each (`list`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import click

from streams.state.models import MigrationStatus


class RunView(Protocol):
    def as_json(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=RunView)

RESUMABLE = ("stopped", MigrationStatus.INTERRUPTED, MigrationStatus.FAILED)


def echo_run(progress: R, as_json: bool, text: Callable[[R], str]) -> None:
    click.echo(json.dumps(progress.as_json(), indent=2) if as_json else text(progress))


def echo_runs(found: Sequence[R], as_json: bool, line: Callable[[R], str], none: str) -> None:
    if as_json:
        click.echo(json.dumps([p.as_json() for p in found], indent=2))
        return
    click.echo("\n".join(line(p) for p in found) if found else none)


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
