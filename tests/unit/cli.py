"""The `tuneflow` entry point run in the test's own process: the exit code, stdout and stderr of one command."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from streams.cli import main


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


Run = Callable[..., Result]


def in_process(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """`run(*args)` runs one command with TUNEFLOW_HOME at `home` (or at `home=` given to it)."""
    monkeypatch.delenv("TUNEFLOW_DB_URL", raising=False)
    monkeypatch.setenv("TUNEFLOW_HOME", str(home))

    def run(*args: str, home: Path = home) -> Result:
        monkeypatch.setenv("TUNEFLOW_HOME", str(home))
        monkeypatch.setattr(sys, "argv", ["tuneflow", *args])
        with pytest.raises(SystemExit) as exited:
            main()
        out, err = capsys.readouterr()
        return Result(exited.value.code if isinstance(exited.value.code, int) else 1, out, err)

    return run


def migrated_catalog(tuneflow: Run, directory: Path, tracks: int, seed: int) -> tuple[str, str]:
    """A generated catalog of `tracks` tracks (SQLite) migrated into the embedded store: (source URL, target URL)."""
    from streams.catalog.generator import generate_catalog
    from tests.migration_oracle import CATALOG_TEMPLATE

    source = f"sqlite:///{directory / 'legacy.sqlite'}"
    generate_catalog(source, tracks, seed=seed)
    target = f"embedded://{directory / 'store'}"
    started = tuneflow("migrate", "start", "--source", source, "--target", target, "--template",
                       str(CATALOG_TEMPLATE))
    assert started.returncode == 0, started.stderr
    return source, target
