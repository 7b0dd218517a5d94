"""`deployer.<app>.memory`: an instance past its RSS limit drains and exits with 137, saying why."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from streams.runtime.memory import EXIT_MEMORY, MemoryGuard, rss_mb


def test_the_guard_fires_once_when_rss_passes_the_limit() -> None:
    readings = iter([100.0, 180.0, 260.0, 300.0])
    seen: list[float] = []
    fired = threading.Event()
    guard = MemoryGuard(250, lambda used: (seen.append(used), fired.set()), every_s=0.01,
                        measure=lambda: next(readings))
    guard.start()
    assert fired.wait(5)
    guard.close()
    assert seen == [260.0] and guard.exceeded_at == 260.0


def test_rss_of_this_process_is_read_from_proc() -> None:
    assert 5 < rss_mb() < 4096


def test_an_app_past_its_limit_drains_and_exits_137(tmp_path: Path) -> None:
    env = {**os.environ, "TUNEFLOW_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "streams.cli", "app", "run", "log", "--binder", "memory",
                             "--stream", "s", "--input", "raw", "--max-memory-mb", "5"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == EXIT_MEMORY
    assert "memory limit exceeded: RSS" in result.stderr and "> 5 MiB (deployer.log.memory)" in result.stderr
    assert "Traceback" not in result.stderr
