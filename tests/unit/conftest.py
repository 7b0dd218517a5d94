"""Fixtures the unit tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.cli import Run, in_process


@pytest.fixture
def tuneflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """The `tuneflow` entry point in this process, with its own TUNEFLOW_HOME (`home=` picks another)."""
    return in_process(tmp_path / "home", monkeypatch, capsys)
