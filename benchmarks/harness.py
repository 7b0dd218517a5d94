"""Timing and reporting shared by every benchmark: repeat, keep every run, report the median."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

REPEATS = int(os.environ.get("TUNEFLOW_BENCH_REPEATS", "3"))


def measure(name: str, items: int, run: Callable[[], None], setup: Callable[[], None] | None = None,
            unit: str = "records/s", repeats: int = REPEATS, **details: Any) -> dict[str, Any]:
    """Run `run` `repeats` times (after `setup` each time); rates are items / wall seconds."""
    rates = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        started = time.perf_counter()
        run()
        rates.append(items / (time.perf_counter() - started))
    result = {"name": name, "unit": unit, "items": items, "median": round(statistics.median(rates), 1),
              "runs": [round(r, 1) for r in rates], **details}
    print(f"  {name:<48} {result['median']:>12,.0f} {unit}  (runs: {', '.join(f'{r:,.0f}' for r in rates)})",
          flush=True)
    return result


def cpu_busy_s() -> float:
    """Seconds the whole machine's cores have been busy since boot (every process: the stores' servers too)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory so far (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def machine() -> dict[str, Any]:
    versions = {}
    for package in ("confluent-kafka", "pymongo", "pydantic", "orjson", "SQLAlchemy", "psycopg2-binary", "PyMySQL"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    cpu = ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        pass
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "cpu_model": cpu,
            "platform": platform.platform(), "packages": versions}
