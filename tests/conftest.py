"""Shared test setup: every test gets its own TUNEFLOW_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def tuneflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "tuneflow-home"
    monkeypatch.setenv("TUNEFLOW_HOME", str(home))
    return home
