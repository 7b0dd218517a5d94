"""`deployer.<app>.memory` for processes the local deployer starts: a watch on the instance's own RSS.

Past the limit the instance stops the way SIGTERM stops it (drain, flush, commit, exit), so nothing is lost, and
exits with EXIT_MEMORY, the code of a process killed for memory, with the reason in its log.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

EXIT_MEMORY = 137
CHECK_EVERY_S = 1.0
_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def rss_mb() -> float:
    """This process's resident set size in MiB (Linux /proc)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_MB


class MemoryGuard:
    """Calls `on_exceeded(rss_mb)` once, from a daemon thread, when RSS goes past `limit_mb`."""

    def __init__(self, limit_mb: int, on_exceeded: Callable[[float], None], every_s: float = CHECK_EVERY_S,
                 measure: Callable[[], float] = rss_mb) -> None:
        self.limit_mb = limit_mb
        self.exceeded_at: float | None = None
        self._on_exceeded = on_exceeded
        self._every_s = every_s
        self._measure = measure
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="memory-guard", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self._every_s):
            used = self._measure()
            if used > self.limit_mb:
                self.exceeded_at = used
                self._on_exceeded(used)
                return
