"""The migration switch: how long a phase change takes to reach every one of 6 app instances (separate processes,
each with its own watcher on the control topic), and how long a whole flip takes (writers, their acks, readers).

The issue's bound: p99 <= 1 s across 6 instances. TUNEFLOW_BENCH_SWITCH_CHANGES changes (default 40).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from streams.binders.kafka import KafkaBinder
from streams.migration.phases import PHASES, Phase
from streams.migration.switch import SwitchController
from streams.migration.switch_bus import KafkaSwitchBus
from streams.migration.switch_store import SwitchStore
from streams.state import open_state

INSTANCES = 6
CHANGES = int(os.environ.get("TUNEFLOW_BENCH_SWITCH_CHANGES", "40"))
FLIPS = 10


def run_all(env: dict[str, str], work: Path) -> dict[str, Any]:
    bootstrap = env["TUNEFLOW_KAFKA_BOOTSTRAP"]
    migration = f"bench-{uuid.uuid4().hex[:8]}"
    state = open_state(f"sqlite:///{work / 'switch-state.db'}")
    store, binder = SwitchStore(state), KafkaBinder(bootstrap)
    bus = KafkaSwitchBus(binder)
    applied: dict[int, list[float]] = {}
    lock = threading.Lock()
    watchers = [_watcher(bootstrap, migration, index, applied, lock) for index in range(INSTANCES)]
    try:
        _wait(lambda: len([a for a in bus.acks(migration) if a.epoch == 0]) == INSTANCES, 60, "instances started")
        latencies = []
        current = store.ensure(migration).state
        for change in range(CHANGES):
            started = time.time()
            current = store.publish(migration, PHASES[(change + 1) % len(PHASES)], current.reads, current.epoch)
            bus.publish(current)
            epoch = current.epoch
            _wait(lambda epoch=epoch: len(applied.get(epoch, [])) == INSTANCES, 10,  # type: ignore[misc]
                  f"change {change} applied everywhere")
            with lock:
                latencies.append(max(applied[epoch]) - started)  # the change has reached every instance
        controller = SwitchController(store, bus)  # no gate: the flips forward are forced
        if current.phase is not Phase.DUAL_RDBMS_PRIMARY:
            controller.move(migration, Phase.DUAL_RDBMS_PRIMARY, timeout_s=10, force=True, reason="benchmark")
        flips = []
        for flip in range(FLIPS):  # forward to MongoDB reads and back: each a two-step flip with every ack
            target = Phase.DUAL_MONGO_PRIMARY if flip % 2 == 0 else Phase.DUAL_RDBMS_PRIMARY
            started = time.monotonic()
            controller.move(migration, target, timeout_s=10, force=True, reason="benchmark")
            flips.append(time.monotonic() - started)
    finally:
        for process in watchers:
            process.terminate()
        for process in watchers:
            process.wait(30)
        bus.close()
        binder.close()
        state.close()
    result = {"instances": INSTANCES, "changes": CHANGES, **_stats("reach_all", latencies),
              "flips": len(flips), **_stats("flip", flips), "bound_p99_seconds": 1.0}
    print(f"switch: a phase change reaches all {INSTANCES} instances in p50 {result['reach_all_p50_seconds']:.3f}s, "
          f"p99 {result['reach_all_p99_seconds']:.3f}s (bound 1 s); a full flip with acks takes p50 "
          f"{result['flip_p50_seconds']:.3f}s", flush=True)
    return result


def _stats(name: str, values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {f"{name}_p50_seconds": round(statistics.median(ordered), 4), f"{name}_p99_seconds": round(p99, 4),
            f"{name}_max_seconds": round(ordered[-1], 4)}


def _watcher(bootstrap: str, migration: str, index: int, applied: dict[int, list[float]],
             lock: threading.Lock) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.switch", bootstrap, migration, str(index)],
                               stdout=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            event = orjson.loads(line)
            with lock:
                applied.setdefault(event["epoch"], []).append(event["at"])

    threading.Thread(target=read, daemon=True).start()
    return process


def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"benchmark switch: {what} not seen within {timeout_s:g}s")
        time.sleep(0.002)


def _instance(bootstrap: str, migration: str, index: int) -> None:
    """One app-like instance: a watcher that prints each state it applies, with the wall-clock time it did."""
    import signal

    from streams.migration.switch_watch import KafkaSwitchWatch

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    watch = KafkaSwitchWatch(KafkaBinder(bootstrap), migration, "bench", "dual-write", index)
    watch.on_change(lambda state: print(orjson.dumps({"epoch": state.epoch, "at": time.time()}).decode(),
                                        flush=True))
    watch.start()
    stop.wait()
    watch.close()


if __name__ == "__main__":
    _instance(sys.argv[1], sys.argv[2], int(sys.argv[3]))
