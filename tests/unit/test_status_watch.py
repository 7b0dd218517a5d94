"""The live view of `stream status --watch`: per-app sums over instances, instances up, the lag trend."""

from __future__ import annotations

import io

from rich.console import Console

from streams.cli.watch import StreamView, sparkline, watch
from streams.platform.service import AppInstanceStatus


def _instance(label: str, index: int, *, in_s: float = 0, lag: float = 0, up: bool = True,
              failed: float = 0) -> AppInstanceStatus:
    return AppInstanceStatus(label, index, 1000 + index, 9000 + index, "up" if up else "down", up, 0, 0, 0,
                             in_s, in_s, failed, lag)


def test_sparkline_scales_between_the_lowest_and_highest_value() -> None:
    assert sparkline([0, 50, 100]) == "▁▅█"
    assert sparkline([7, 7]) == "▄▄"
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([]) == ""


def test_apps_sum_their_instances_and_keep_a_lag_trend() -> None:
    view = StreamView("t1")
    for lag in (100, 400, 900):
        view.update([_instance("kafka", 0, in_s=50), _instance("normalize", 0, in_s=20, lag=lag / 2),
                     _instance("normalize", 1, in_s=30, lag=lag / 2, up=False, failed=1.5)])
    normalize = view.apps["normalize"]
    assert (normalize.instances, normalize.up, normalize.in_per_s, normalize.failed_per_s, normalize.lag) == (
        2, 1, 50.0, 1.5, 900.0)
    assert list(normalize.lag_trend) == [100.0, 400.0, 900.0]
    assert list(view.apps["kafka"].lag_trend) == [0.0, 0.0, 0.0]


def test_without_a_terminal_every_reading_is_printed() -> None:
    out = io.StringIO()
    readings = iter([[_instance("normalize", 0, in_s=1234.5, lag=10)], [_instance("normalize", 0, lag=30)]])
    watch("t1", lambda: next(readings), Console(file=out, width=120, force_terminal=False), readings=2)
    text = out.getvalue()
    assert text.count("stream t1 —") == 2
    assert "1,234.5" in text and "▁█" in text
    assert "1/1" in text


def test_an_undeployed_stream_says_so() -> None:
    out = io.StringIO()
    watch("gone", lambda: [], Console(file=out, width=120, force_terminal=False), readings=1)
    assert "no instances: not deployed" in out.getvalue()
