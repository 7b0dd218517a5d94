"""The migration switch on real Kafka: six app instances apply every change within a second, `switch show` names an
instance that has not applied it, a flip goes back without every writer's ack, and the gate reads real consumer lag."""

from __future__ import annotations

import getpass
import json
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streams.binders.kafka import KafkaBinder
from streams.migration.gate import ConsumedTopics, shadow_backlog
from streams.migration.phases import PHASES, Phase, SwitchState
from streams.migration.switch_bus import KafkaSwitchBus
from streams.migration.switch_store import SwitchStore
from streams.migration.switch_watch import KafkaSwitchWatch
from streams.records import Record
from streams.runtime.metrics import AppMetrics, metric_sum
from streams.state import StreamStatus, open_state
from tests.integration.services import unique_name
from tests.unit.cli import Run, in_process

INSTANCES = 6


@pytest.fixture
def binder(kafka_bootstrap: str) -> Iterator[KafkaBinder]:
    binder = KafkaBinder(kafka_bootstrap)
    yield binder
    binder.close()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        kafka_bootstrap: str) -> Run:
    monkeypatch.setenv("TUNEFLOW_KAFKA_BOOTSTRAP", kafka_bootstrap)
    return in_process(tmp_path / "home", monkeypatch, capsys)


def test_six_instances_apply_every_change_within_a_second(binder: KafkaBinder) -> None:
    migration = unique_name("sw")
    registry = CollectorRegistry()
    applied: dict[int, dict[int, float]] = {}  # epoch: {instance: when it applied it}
    watchers = [KafkaSwitchWatch(binder, migration, "writer", "dual-write", i,
                                 AppMetrics(registry, "writer", "dual-write", i)) for i in range(INSTANCES)]
    for index, watch in enumerate(watchers):
        watch.on_change(lambda state, index=index: applied.setdefault(state.epoch, {}).__setitem__(
            index, time.monotonic()))
        watch.start()
    state = open_state()
    store, bus = SwitchStore(state), KafkaSwitchBus(binder)
    latencies: list[float] = []
    try:
        current = store.ensure(migration).state
        for change in range(12):
            phase = PHASES[(change + 1) % len(PHASES)]
            started = time.monotonic()
            current = store.publish(migration, phase, current.reads, current.epoch)
            bus.publish(current)
            deadline = started + 10
            while len(applied.get(current.epoch, {})) < INSTANCES and time.monotonic() < deadline:
                time.sleep(0.005)
            assert sorted(applied.get(current.epoch, {})) == list(range(INSTANCES)), f"change {change}"
            latencies.extend(when - started for when in applied[current.epoch].values())
            assert [w.current() for w in watchers] == [current] * INSTANCES
        p99 = statistics.quantiles(latencies, n=100)[98]
        print(f"phase change to {INSTANCES} instances: p50 {statistics.median(latencies):.3f}s p99 {p99:.3f}s "
              f"max {max(latencies):.3f}s over {len(latencies)} applications")
        assert p99 <= 1.0  # the switch's promise: every running app applies a change within 1 s
        page = generate_latest(registry).decode()
        for index in range(INSTANCES):
            assert metric_sum(page, "tuneflow_switch_phase", migration=migration, instance=str(index)) \
                == current.phase.number
        deadline = time.monotonic() + 5
        while {a.epoch for a in bus.acks(migration)} != {current.epoch} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted((a.name, a.epoch) for a in bus.acks(migration)) == \
            [(f"writer/dual-write/{i}", current.epoch) for i in range(INSTANCES)]
    finally:
        for watch in watchers:
            watch.close()
        assert bus.acks(migration) == []  # an instance that stops is no longer waited for
        bus.close()
        state.close()


def test_show_names_a_laggard_and_a_flip_without_its_ack_goes_back(binder: KafkaBinder, cli: Run) -> None:
    migration = unique_name("sw")
    release = threading.Event()
    watchers = [KafkaSwitchWatch(binder, migration, "writer", "dual-write", i) for i in range(3)]
    watchers[2].on_change(lambda state: release.wait(20))  # a writer still landing a batch of the old phase
    for watch in watchers:
        watch.start()
    try:
        flip = cli("switch", "forward", "--migration", migration, "--timeout", "1")
        assert flip.returncode == 1
        assert f"switch of migration '{migration}' to dual-rdbms-primary went back to legacy" in flip.stderr
        assert "  - not acked by writer/dual-write/2 (on legacy, epoch 0)" in flip.stderr
        shown = cli("switch", "show", "--migration", migration)
        assert shown.returncode == 0
        assert f"migration {migration}: phase legacy (0), epoch 2, reads from rdbms" in shown.stdout
        assert "not yet on the current phase (legacy, epoch 2): writer/dual-write/2 (legacy, epoch 0)" \
            in shown.stdout
        assert json.loads(cli("switch", "show", "--migration", migration, "--json").stdout)["laggards"] == \
            ["writer/dual-write/2"]
        release.set()
        flip = cli("switch", "forward", "--migration", migration, "--timeout", "10")
        assert flip.returncode == 0 and "legacy → dual-rdbms-primary (epoch 3, reads from rdbms)" in flip.stdout
        view = json.loads(cli("switch", "show", "--migration", migration, "--json").stdout)
        assert view["laggards"] == [] and [i["epoch"] for i in view["instances"]] == [3, 3, 3]
        assert [w.current() for w in watchers] == \
            [SwitchState(migration, Phase.DUAL_RDBMS_PRIMARY, watchers[0].current().reads, 3)] * 3
    finally:
        release.set()
        for watch in watchers:
            watch.close()


def test_the_gate_reads_real_lag_names_each_reason_and_records_a_forced_flip(binder: KafkaBinder, cli: Run) -> None:
    migration, writer, catch_up = unique_name("sw"), unique_name("w"), unique_name("c")
    state = open_state()
    for name, definition in ((writer, f"http | normalize | dual-write --migration={migration}"),
                             (catch_up, "cdc-postgres | assemble | mongo")):
        state.create_stream(name, definition, definition)
        state.set_stream_status(name, StreamStatus.DEPLOYED)
    state.close()
    repair = f"{writer}.dual-write.repair"
    binder.ensure_topics([repair, f"{catch_up}.cdc-postgres", f"{catch_up}.assemble"])
    output = binder.output()
    output.send(repair, [Record(key=str(i).encode(), value=b"{}") for i in range(3)])
    output.send(f"{catch_up}.assemble", [Record(key=str(i).encode(), value=b"{}") for i in range(5)])
    output.flush()
    output.close()

    assert cli("switch", "forward", "--migration", migration).returncode == 0
    refused = cli("switch", "forward", "--migration", migration, "--catch-up", catch_up, "--max-lag", "2")
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[1:] == [
        f"  - shadow backlog: shadow writes still to repair: {repair} 3",
        f"  - catch-up lag: stream {catch_up} is 5 changes behind (bound 2)",
        "  - clean verify: no clean verify recorded (or the newest one found differences): run "
        f"`tuneflow verify … --migration {migration}`"]

    # The repair consumer replays the backlog: that check passes, on the very same topic.
    reader = binder.input([repair], repair, "0")
    records: list[Record] = []
    deadline = time.monotonic() + 30
    while len(records) < 3 and time.monotonic() < deadline:
        records.extend(reader.poll(10, 0.5))
    reader.commit(records)
    reader.close()
    assert shadow_backlog(binder, [ConsumedTopics(repair, (repair,))]).ok

    forced = cli("switch", "forward", "--migration", migration, "--max-lag", "2", "--force", "--reason",
                 "lag is old test data")
    assert forced.returncode == 0 and "dual-rdbms-primary → dual-mongo-primary" in forced.stdout
    history = json.loads(cli("switch", "history", "--migration", migration, "--json").stdout)
    last = history[-1]
    assert (last["from"], last["to"], last["forced"], last["who"], last["reason"], last["outcome"]) == \
        ("dual-rdbms-primary", "dual-mongo-primary", True, getpass.getuser(), "lag is old test data", "done")
    assert {(check["check"], check["ok"]) for check in last["gate"]} == {
        ("shadow backlog", True), ("catch-up lag", False), ("clean verify", False),
        ("apps on the current phase", True)}
    assert history[-2]["outcome"] == "refused by the gate" and not history[-2]["forced"]
    shown = json.loads(cli("switch", "show", "--migration", migration, "--json").stdout)
    assert (shown["phase"], shown["reads"], shown["catch_up"]) == ("dual-mongo-primary", "mongo", catch_up)
    assert cli("switch", "rollback", "--migration", migration).returncode == 0  # never gated
