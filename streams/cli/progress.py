"""Progress of long commands: a bar with rate and ETA on a terminal (tqdm), plain lines every few seconds otherwise."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType

from tqdm import tqdm  # type: ignore[import-untyped]

PLAIN_EVERY_S = 5.0


class Progress:
    """`update(n)` from any thread; a terminal gets a live bar, a log or pipe a line every few seconds."""

    def __init__(self, label: str, total: int, unit: str = "rows") -> None:
        self._label, self._total, self._unit = label, total, unit
        self._done = 0
        self._lock = threading.Lock()
        self._started = self._shown = time.monotonic()
        self._bar = tqdm(total=total, desc=label, unit=f" {unit}", unit_scale=True, file=sys.stderr,
                         dynamic_ncols=True) if sys.stderr.isatty() else None

    def update(self, count: int) -> None:
        with self._lock:
            self._done += count
            if self._bar is not None:
                self._bar.update(count)
            elif time.monotonic() - self._shown >= PLAIN_EVERY_S:
                self._shown = time.monotonic()
                self._line()

    def _line(self) -> None:
        elapsed = time.monotonic() - self._started
        rate = self._done / elapsed if elapsed > 0 else 0.0
        left = max(0, self._total - self._done)
        eta = f"ETA {left / rate:,.0f}s" if rate > 0 else "ETA unknown"
        share = f" ({100 * self._done / self._total:.0f}%)" if self._total else ""
        print(f"{self._label}: {self._done:,}/{self._total:,} {self._unit}{share}, {rate:,.0f} {self._unit}/s, {eta}",
              file=sys.stderr, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
        elif kind is None:
            self._line()
