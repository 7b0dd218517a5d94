"""`tuneflow stream status NAME --watch`: a live view of a stream, redrawn every second until Ctrl-C.

Per app: instances up of those recorded, records in/out/failed per second summed over its instances, and its lag
with a small trend of the last minute. The numbers are the ones `stream status` reads from each instance's own
/healthz, /readyz and /metrics. On a terminal the view is redrawn in place (rich); otherwise one block is printed
per refresh, so a log or a pipe gets every reading.
"""

from __future__ import annotations

import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rich.console import Console
from rich.live import Live
from rich.table import Table

from streams.platform.service import AppInstanceStatus

TREND_POINTS = 60
_BARS = "▁▂▃▄▅▆▇█"


@dataclass
class AppView:
    label: str
    up: int = 0
    instances: int = 0
    in_per_s: float = 0.0
    out_per_s: float = 0.0
    failed_per_s: float = 0.0
    lag: float = 0.0
    lag_trend: deque[float] = field(default_factory=lambda: deque(maxlen=TREND_POINTS))


def sparkline(values: Sequence[float]) -> str:
    """One bar per value, scaled between the smallest and the largest shown."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        return _BARS[0 if high == 0 else 3] * len(values)
    return "".join(_BARS[round((v - low) / (high - low) * (len(_BARS) - 1))] for v in values)


class StreamView:
    """What the watch shows, folded from successive readings of every instance."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.apps: dict[str, AppView] = {}
        self.readings = 0

    def update(self, instances: Sequence[AppInstanceStatus]) -> None:
        self.readings += 1
        seen: dict[str, AppView] = {}
        for instance in instances:
            view = seen.get(instance.label)
            if view is None:
                previous = self.apps.get(instance.label)
                view = seen[instance.label] = AppView(instance.label,
                                                      lag_trend=previous.lag_trend if previous else deque(
                                                          maxlen=TREND_POINTS))
            view.instances += 1
            view.up += instance.state == "up" and instance.ready
            view.in_per_s += instance.in_per_s
            view.out_per_s += instance.out_per_s
            view.failed_per_s += instance.failed_per_s
            view.lag += instance.lag
        for view in seen.values():
            view.lag_trend.append(view.lag)
        self.apps = seen

    def table(self) -> Table:
        now = datetime.now(UTC).strftime("%H:%M:%S")
        table = Table(title=f"stream {self.name} — {now} UTC (Ctrl-C to stop)", title_justify="left")
        for column, justify in (("app", "left"), ("up", "right"), ("in/s", "right"), ("out/s", "right"),
                                ("failed/s", "right"), ("lag", "right"), ("lag trend", "left")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        if not self.apps:
            table.add_row("(no instances: not deployed)", "", "", "", "", "", "")
        for view in self.apps.values():
            up = f"{view.up}/{view.instances}"
            table.add_row(view.label, up if view.up == view.instances else f"[red]{up}[/red]",
                          f"{view.in_per_s:,.1f}", f"{view.out_per_s:,.1f}",
                          f"[red]{view.failed_per_s:,.1f}[/red]" if view.failed_per_s else "0.0",
                          f"{view.lag:,.0f}", sparkline(list(view.lag_trend)[-30:]))
        return table


def watch(name: str, read: Callable[[], Sequence[AppInstanceStatus]], console: Console | None = None,
          readings: int | None = None) -> None:
    """Redraw until Ctrl-C (or `readings` times); `read` takes about a second (the rate window).

    Ctrl-C only asks the loop to stop after the reading in progress: an interrupt raised inside the live display's
    locks could leave it waiting on itself."""
    console = console or Console()
    view = StreamView(name)
    stop = threading.Event()
    with _stop_on_ctrl_c(stop):
        if console.is_terminal:
            with Live(view.table(), console=console, refresh_per_second=4, transient=False) as screen:
                while not stop.is_set() and (readings is None or view.readings < readings):
                    view.update(read())
                    screen.update(view.table())
        else:
            while not stop.is_set() and (readings is None or view.readings < readings):
                view.update(read())
                console.print(view.table())
                console.file.flush()


@contextmanager
def _stop_on_ctrl_c(stop: threading.Event) -> Iterator[None]:
    """SIGINT sets `stop` instead of raising, while inside (the main thread only: signals go there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
