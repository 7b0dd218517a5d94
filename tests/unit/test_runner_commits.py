"""The runner's offsets: committed only after outputs are flushed, once per interval, and all of them on stop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry

from streams.binders.memory import MemoryBinder
from streams.errors import TransientError
from streams.records import Record
from streams.runtime.contract import AppContext, AppOptions, Outcome, ProcessorApp, SinkApp
from streams.runtime.metrics import AppMetrics
from streams.runtime.retry import RetryPolicy
from streams.runtime.runner import Runner, RunSpec


class Upper(ProcessorApp[AppOptions]):
    """Upper-cases values; holds its sixth batch until `go` is set, so a test can look at a running instance."""

    name = "upper"
    go = threading.Event()
    batches = 0

    def process(self, batch: Sequence[Record]) -> Outcome:
        Upper.batches += 1
        if Upper.batches == 6:
            Upper.go.wait(10)
        return Outcome(outputs=[Record(r.key, r.value.upper()) for r in batch])


class Collect(SinkApp[AppOptions]):
    """A sink whose store is unreachable for its first `setup_failures` setups."""

    name = "collect"
    setup_failures = 0

    def setup(self) -> None:
        self.seen: list[bytes] = getattr(self, "seen", [])
        if Collect.setup_failures:
            Collect.setup_failures -= 1
            raise TransientError("store not reachable yet")

    def write(self, batch: Sequence[Record]) -> Outcome:
        self.seen.extend(r.value for r in batch)
        return Outcome()


def _runner(app_class: type, binder: MemoryBinder, spec: RunSpec) -> Runner:
    metrics = AppMetrics(CollectorRegistry(), spec.stream, spec.label, 0)
    context = AppContext(stream=spec.stream, label=spec.label, instance=0, binder=binder, metrics=metrics,
                         log=logging.getLogger("test"))
    return Runner(app_class(AppOptions(), context), binder, spec)


def _feed(binder: MemoryBinder, topic: str, count: int) -> None:
    binder.ensure_topics([topic], partitions=2)
    out = binder.output()
    out.send(topic, [Record(str(i).encode(), f"v{i}".encode()) for i in range(count)])
    out.flush()


def _wait(condition: Callable[[], bool], what: str) -> None:
    for _ in range(400):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _committed(binder: MemoryBinder, group: str, topic: str) -> int:
    return sum(binder.committed(group, topic, p) or 0 for p in range(2))


def test_offsets_wait_for_the_commit_interval_and_are_all_committed_on_stop() -> None:
    binder = MemoryBinder()
    _feed(binder, "in", 1000)
    spec = RunSpec(stream="s", label="upper", inputs=["in"], output="out", batch_size=100, commit_interval_s=3600)
    Upper.batches, Upper.go = 0, threading.Event()
    runner = _runner(Upper, binder, spec)
    thread = threading.Thread(target=runner.run)
    thread.start()
    _wait(lambda: Upper.batches == 6, "five batches handled")
    # Within the interval records keep flowing; the running instance holds the commit back ...
    assert runner.metrics.records_out._value.get() == 500
    assert _committed(binder, "s", "in") == 0
    runner.stop()
    Upper.go.set()
    thread.join(10)
    # ... and draining on stop flushes the outputs, then commits everything handled.
    assert _committed(binder, "s", "in") == 600
    assert sum(binder.end_offset("out", p) for p in range(binder.partitions("out"))) == 600


def test_an_idle_input_commits_what_was_handled_at_once() -> None:
    binder = MemoryBinder()
    _feed(binder, "in", 300)
    spec = RunSpec(stream="s", label="upper", inputs=["in"], output="out", batch_timeout_s=0.05,
                   commit_interval_s=3600)
    Upper.batches, Upper.go = 0, threading.Event()
    Upper.go.set()
    runner = _runner(Upper, binder, spec)
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        _wait(lambda: _committed(binder, "s", "in") == 300, "the commit after the input ran dry")
    finally:
        runner.stop()
        thread.join(10)


def test_a_sink_whose_store_is_down_at_start_retries_setup_then_runs() -> None:
    binder = MemoryBinder()
    _feed(binder, "in", 50)
    Collect.setup_failures = 2
    spec = RunSpec(stream="s", label="collect", inputs=["in"], retry=RetryPolicy(initial_s=0.01, max_delay_s=0.02))
    runner = _runner(Collect, binder, spec)
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        _wait(lambda: runner.metrics.records_in._value.get() == 50, "the sink to read its input")
    finally:
        runner.stop()
        thread.join(10)
    assert sorted(runner.app.seen) == sorted(f"v{i}".encode() for i in range(50))
    retries = runner.metrics.registry.get_sample_value(
        "tuneflow_retries_total", {"stream": "s", "app": "collect", "instance": "0", "operation": "setup"})
    assert retries == 2
