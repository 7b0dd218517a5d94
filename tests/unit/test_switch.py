"""The migration switch without Kafka: the gate's checks, the phase transitions of `SwitchController` with app
instances that poll the state database, and `tuneflow switch` on the memory binder."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streams.binders.memory import MemoryBinder
from streams.dsl import parse
from streams.migration.gate import (
    NONE_DECLARED,
    ConsumedTopics,
    Gate,
    apps_on_current,
    catch_up_lag,
    catch_up_topics,
    gated,
    recent_verify,
    repair_topics,
    shadow_backlog,
)
from streams.migration.phases import InstanceAck, Phase, StoreRole, SwitchState
from streams.migration.switch import SwitchController, SwitchRefused
from streams.migration.switch_bus import SILENT_AFTER_S, StateSwitchBus
from streams.migration.switch_store import SwitchConflict, SwitchStore
from streams.migration.switch_watch import StatePollingWatch
from streams.records import Record
from streams.runtime.metrics import AppMetrics, metric_sum
from streams.state import open_state
from tests.unit.cli import Run, in_process

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def store() -> Iterator[SwitchStore]:
    state = open_state()
    yield SwitchStore(state)
    state.close()


def controller(store: SwitchStore, gate: Gate | None = None) -> SwitchController:
    return SwitchController(store, StateSwitchBus(store), gate, who=lambda: "alice")


def open_gate(latest: datetime | None = NOW) -> Gate:
    """A gate whose every check passes (nothing deployed, a clean verify just now)."""
    return Gate(MemoryBinder(), [], ConsumedTopics("catch", ("catch.cdc",)), 10, timedelta(hours=1),
                lambda migration: None if latest is None else datetime.now(UTC))


def ack(epoch: int, instance: str = "0", at: float | None = None) -> InstanceAck:
    return InstanceAck("m1", "s1", "dual-write", instance, epoch, Phase.LEGACY, time.time() if at is None else at)


# --- the gate ---------------------------------------------------------------------------------------------------


NO_VERIFY_M1 = "no clean verify recorded (or the newest one found differences): run " \
    "`tuneflow verify … --migration m1`"


def test_only_forward_moves_into_a_phase_reading_mongo_are_gated() -> None:
    assert gated(Phase.DUAL_RDBMS_PRIMARY, Phase.DUAL_MONGO_PRIMARY)
    assert gated(Phase.LEGACY, Phase.MONGO_ONLY)
    assert gated(Phase.DUAL_MONGO_PRIMARY, Phase.MONGO_ONLY)
    assert not gated(Phase.LEGACY, Phase.DUAL_RDBMS_PRIMARY)
    assert not gated(Phase.MONGO_ONLY, Phase.DUAL_MONGO_PRIMARY)
    assert not gated(Phase.DUAL_MONGO_PRIMARY, Phase.LEGACY)


def test_the_verify_check_refuses_none_and_old_ones_and_passes_a_recent_one() -> None:
    none = recent_verify(lambda m: None, "m1", timedelta(hours=1), NOW)
    assert (none.ok, none.detail) == (False, NO_VERIFY_M1)
    old = recent_verify(lambda m: NOW - timedelta(hours=3), "m1", timedelta(hours=1), NOW)
    assert not old.ok and "too old" in old.detail and "3h00m ago" in old.detail and "bound 60m" in old.detail
    recent = recent_verify(lambda m: NOW - timedelta(minutes=5), "m1", timedelta(hours=1), NOW)
    assert recent.ok and "5m ago" in recent.detail


def test_the_apps_check_names_instances_behind_and_ignores_silent_ones() -> None:
    state = SwitchState("m1", Phase.DUAL_RDBMS_PRIMARY, StoreRole.RDBMS, 3)
    now = time.time()
    check = apps_on_current(state, [ack(3, "0", now), ack(2, "1", now), ack(1, "2", now - SILENT_AFTER_S - 1)], now)
    assert not check.ok
    assert check.detail == "not yet on dual-rdbms-primary (epoch 3): s1/dual-write/1 (legacy, epoch 2)"
    assert apps_on_current(state, [ack(3, "0", now)], now).ok


def test_the_backlog_and_lag_checks_read_consumer_group_lag() -> None:
    binder = MemoryBinder()
    binder.ensure_topics(["s1.dual-write.repair", "cdc1.cdc-postgres", "cdc1.assemble"])
    repairs = [ConsumedTopics("s1.dual-write.repair", ("s1.dual-write.repair",))]
    assert shadow_backlog(binder, repairs).ok
    output = binder.output()
    output.send("s1.dual-write.repair", [Record(key=b"1", value=b"{}"), Record(key=b"2", value=b"{}")])
    output.send("cdc1.assemble", [Record(key=str(i).encode(), value=b"{}") for i in range(12)])
    backlog = shadow_backlog(binder, repairs)
    assert (backlog.ok, backlog.detail) == (False, "shadow writes still to repair: s1.dual-write.repair 2")
    catch_up = catch_up_topics(parse("cdc1", "cdc-postgres | assemble | mongo"))
    assert catch_up == ConsumedTopics("cdc1", ("cdc1.cdc-postgres", "cdc1.assemble"))
    lag = catch_up_lag(binder, catch_up, 10)
    assert (lag.ok, lag.detail) == (False, "stream cdc1 is 12 changes behind (bound 10)")
    assert catch_up_lag(binder, catch_up, 12).ok
    unknown = catch_up_lag(binder, None, 10)
    assert not unknown.ok and "--catch-up none" in unknown.detail
    declared = catch_up_lag(binder, NONE_DECLARED, 10)
    assert (declared.ok, declared.detail) == (True, "no catch-up stream: every write goes through dual-write")


def test_repair_topics_come_from_the_dual_write_apps_of_the_migration() -> None:
    definitions = [parse("w1", "http | normalize | dual-write --migration=m1"),
                   parse("w2", "kafka --topic=x | shadow: dual-write"),
                   parse("w3", "kafka --topic=y | dual-write --migration=other"),
                   parse("w4", "kafka --topic=z | mongo")]
    assert [r.group for r in repair_topics(definitions, "m1")] == ["w1.dual-write.repair", "w2.shadow.repair"]


# --- transitions --------------------------------------------------------------------------------------------------


def test_forward_creates_the_switch_and_moves_reads_only_after_the_writers(store: SwitchStore) -> None:
    switch = controller(store, open_gate())
    assert switch.target_of("m1", "forward") is Phase.DUAL_RDBMS_PRIMARY
    first = switch.move("m1", Phase.DUAL_RDBMS_PRIMARY)
    assert first.state == SwitchState("m1", Phase.DUAL_RDBMS_PRIMARY, StoreRole.RDBMS, 1)  # same reads: one step
    second = switch.move("m1", Phase.DUAL_MONGO_PRIMARY)
    assert second.state == SwitchState("m1", Phase.DUAL_MONGO_PRIMARY, StoreRole.MONGO, 3)  # writers, then readers
    assert [c.outcome for c in store.history("m1")] == ["done", "done"]
    assert [check["ok"] for check in store.history("m1")[1].gate or []] == [True, True, True, True]
    with pytest.raises(Exception, match="already at dual-mongo-primary"):
        switch.move("m1", Phase.DUAL_MONGO_PRIMARY)


def test_a_refusal_lists_every_reason_and_is_recorded(store: SwitchStore) -> None:
    switch = controller(store, open_gate(latest=None))
    switch.move("m1", Phase.DUAL_RDBMS_PRIMARY)
    store.ack(ack(0, "7"))  # an instance that never applied epoch 1
    with pytest.raises(SwitchRefused) as refused:
        switch.move("m1", Phase.DUAL_MONGO_PRIMARY)
    assert refused.value.reasons == [
        f"clean verify: {NO_VERIFY_M1}",
        "apps on the current phase: not yet on dual-rdbms-primary (epoch 1): s1/dual-write/7 (legacy, epoch 0)"]
    assert store.get("m1").state.phase is Phase.DUAL_RDBMS_PRIMARY
    refusal = store.history("m1")[-1]
    assert (refusal.outcome, refusal.forced, refusal.who) == ("refused by the gate", False, "alice")


def test_force_needs_a_reason_and_is_recorded_with_who_and_why(store: SwitchStore) -> None:
    switch = controller(store, open_gate(latest=None))
    with pytest.raises(Exception, match="--force needs --reason"):
        switch.move("m1", Phase.DUAL_MONGO_PRIMARY, force=True)
    moved = switch.move("m1", Phase.DUAL_MONGO_PRIMARY, force=True, reason="verify runs tomorrow")
    assert moved.state.reads is StoreRole.MONGO
    change = store.history("m1")[-1]
    assert (change.forced, change.who, change.reason, change.outcome) == (True, "alice", "verify runs tomorrow", "done")
    assert {"check": "clean verify", "ok": False,
            "detail": NO_VERIFY_M1} in (change.gate or [])


def test_a_forward_move_goes_back_when_a_writer_does_not_ack_but_a_rollback_goes_on(store: SwitchStore) -> None:
    switch = controller(store, open_gate())
    switch.move("m1", Phase.DUAL_RDBMS_PRIMARY)
    store.ack(InstanceAck("m1", "s1", "dual-write", "3", 1, Phase.DUAL_RDBMS_PRIMARY, time.time()))  # will hang
    with pytest.raises(SwitchRefused) as refused:
        switch.move("m1", Phase.DUAL_MONGO_PRIMARY, timeout_s=0.3)
    assert refused.value.reasons == ["not acked by s1/dual-write/3 (on dual-rdbms-primary, epoch 1)"]
    assert store.get("m1").state == SwitchState("m1", Phase.DUAL_RDBMS_PRIMARY, StoreRole.RDBMS, 3)
    assert store.history("m1")[-1].outcome.startswith("went back to dual-rdbms-primary: not acked within 0.3s by "
                                                      "s1/dual-write/3")
    back = switch.move("m1", Phase.LEGACY, timeout_s=0.3)  # a rollback: no gate, and it does not wait for ever
    assert back.state.phase is Phase.LEGACY and [a.name for a in back.laggards] == ["s1/dual-write/3"]
    assert store.history("m1")[-1].outcome.startswith("done; not acked within 0.3s by s1/dual-write/3")


def test_a_rollback_is_never_gated_and_stops_at_the_first_phase(store: SwitchStore) -> None:
    switch = controller(store, None)  # no gate at all: forward into mongo is refused, backward is not
    switch.move("m1", Phase.DUAL_RDBMS_PRIMARY)
    with pytest.raises(SwitchRefused, match="no gate configured"):
        switch.move("m1", Phase.MONGO_ONLY)
    switch.move("m1", Phase.MONGO_ONLY, force=True, reason="test")
    assert switch.target_of("m1", "rollback") is Phase.DUAL_MONGO_PRIMARY
    for _ in range(3):
        switch.move("m1", switch.target_of("m1", "rollback"))
    assert store.get("m1").state.phase is Phase.LEGACY
    with pytest.raises(Exception, match="at legacy, the first phase: nothing to rollback to"):
        switch.target_of("m1", "rollback")


def test_a_concurrent_change_wins_over_a_stale_one(store: SwitchStore) -> None:
    store.ensure("m1")
    store.publish("m1", Phase.DUAL_RDBMS_PRIMARY, StoreRole.RDBMS, expect_epoch=0)
    with pytest.raises(SwitchConflict, match="moved meanwhile"):
        store.publish("m1", Phase.DUAL_MONGO_PRIMARY, StoreRole.RDBMS, expect_epoch=0)


def test_polling_watchers_apply_each_change_ack_it_and_export_the_phase(store: SwitchStore) -> None:
    registry = CollectorRegistry()
    watchers = [StatePollingWatch(store, "m1", "s1", "dual-write", i, AppMetrics(registry, "s1", "dual-write", i))
                for i in range(3)]
    applied: list[tuple[int, int]] = []
    for index, watch in enumerate(watchers):
        watch.on_change(lambda state, index=index: applied.append((index, state.epoch)))
        watch.start()
    try:
        switch = controller(store, open_gate())
        moved = switch.move("m1", Phase.DUAL_RDBMS_PRIMARY, timeout_s=5)
        assert moved.laggards == []
        assert {a.name for a in switch.show("m1").instances} == {f"s1/dual-write/{i}" for i in range(3)}
        moved = switch.move("m1", Phase.DUAL_MONGO_PRIMARY, timeout_s=5)
        assert [w.current() for w in watchers] == [moved.state] * 3
        assert sorted(applied) == sorted((i, e) for i in range(3) for e in (1, 2, 3))
        view = switch.show("m1")
        assert [a.epoch for a in view.instances] == [3, 3, 3] and view.laggards == []
        page = generate_latest(registry).decode()
        assert metric_sum(page, "tuneflow_switch_phase", migration="m1", instance="2") == 2.0
        assert metric_sum(page, "tuneflow_switch_epoch", migration="m1", instance="0") == 3.0
    finally:
        for watch in watchers:
            watch.close()
    assert store.acks("m1") == []  # a closed instance is no longer waited for


# --- the command line --------------------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    return in_process(tmp_path / "home", monkeypatch, capsys)


def test_cli_forward_show_refusal_force_rollback_and_history(cli: Run) -> None:
    assert cli("switch", "show", "--binder", "memory").returncode == 2
    moved = cli("switch", "forward", "--binder", "memory", "--migration", "m1")
    assert moved.returncode == 0 and "legacy → dual-rdbms-primary (epoch 1, reads from rdbms)" in moved.stdout
    state = open_state()
    SwitchStore(state).ack(InstanceAck("m1", "s1", "dual-write", "4", 0, Phase.LEGACY, time.time()))
    state.close()
    shown = cli("switch", "show", "--binder", "memory")
    assert "phase dual-rdbms-primary (1), epoch 1, reads from rdbms" in shown.stdout
    assert "not yet on the current phase (dual-rdbms-primary, epoch 1): s1/dual-write/4 (legacy, epoch 0)" \
        in shown.stdout
    assert json.loads(cli("switch", "show", "--binder", "memory", "--json").stdout)["laggards"] == ["s1/dual-write/4"]
    refused = cli("switch", "forward", "--binder", "memory")
    assert refused.returncode == 1
    assert "refused by the gate" in refused.stderr and "  - clean verify: no clean verify recorded" in refused.stderr
    assert "  - apps on the current phase: not yet on dual-rdbms-primary" in refused.stderr
    assert "  - catch-up lag: not readable here" in refused.stderr
    declared = cli("switch", "forward", "--binder", "memory", "--catch-up", "none")
    assert declared.returncode == 1 and "catch-up lag" not in declared.stderr  # declared: that check passes
    assert cli("switch", "forward", "--binder", "memory", "--catch-up", "nosuch").returncode != 0
    assert cli("switch", "forward", "--binder", "memory", "--force").returncode == 2  # no reason
    forced = cli("switch", "forward", "--binder", "memory", "--force", "--reason", "drill", "--timeout", "0.2")
    assert forced.returncode == 1 and "not acked by s1/dual-write/4" in forced.stderr  # still lagging: went back
    state = open_state()
    SwitchStore(state).forget_ack("m1", "s1", "dual-write", "4")
    state.close()
    forced = cli("switch", "forward", "--binder", "memory", "--force", "--reason", "drill")
    assert forced.returncode == 0 and "forced past the gate by " in forced.stdout and ": drill" in forced.stdout
    back = cli("switch", "rollback", "--binder", "memory", "--reason", "errors on reads")
    assert back.returncode == 0 and "dual-mongo-primary → dual-rdbms-primary" in back.stdout
    history = json.loads(cli("switch", "history", "--binder", "memory", "--json").stdout)
    assert [(h["from"], h["to"], h["forced"], h["outcome"].split(":")[0]) for h in history] == [
        ("legacy", "dual-rdbms-primary", False, "done"),
        ("dual-rdbms-primary", "dual-mongo-primary", False, "refused by the gate"),
        ("dual-rdbms-primary", "dual-mongo-primary", False, "refused by the gate"),
        ("dual-rdbms-primary", "dual-mongo-primary", True, "went back to dual-rdbms-primary"),
        ("dual-rdbms-primary", "dual-mongo-primary", True, "done"),
        ("dual-mongo-primary", "dual-rdbms-primary", False, "done")]
    assert history[4]["reason"] == "drill" and history[5]["reason"] == "errors on reads"
    text = cli("switch", "history", "--binder", "memory").stdout
    assert "FORCED" in text and "gate: clean verify: NO — no clean verify recorded" in text
    assert cli("switch", "set", "mongo-only", "--binder", "memory", "--max-verify-age", "soon").returncode == 2


def test_an_instance_whose_listener_fails_does_not_ack_until_it_succeeds(store: SwitchStore) -> None:
    failures = [RuntimeError("in-flight batch not landed")]
    acked_while_failing: list[int] = []

    def landing(state: SwitchState) -> None:
        if failures:
            acked_while_failing.extend(a.epoch for a in store.acks("m1"))
            raise failures.pop()

    watch = StatePollingWatch(store, "m1", "s1", "dual-write", 0)
    watch.on_change(landing)
    watch.start()
    try:
        moved = controller(store, open_gate()).move("m1", Phase.DUAL_RDBMS_PRIMARY, timeout_s=5)
        assert moved.laggards == []  # acked once the retried listener went through (about 1 s later)
        assert not failures and acked_while_failing == [0] and [a.epoch for a in store.acks("m1")] == [1]
    finally:
        watch.close()


def test_an_app_on_the_memory_binder_follows_the_switch_in_the_state_database(store: SwitchStore) -> None:
    from streams.migration.switch_watch import open_phase_view
    from streams.runtime.contract import AppContext

    context = AppContext("s1", "dual-write", 0, MemoryBinder(), AppMetrics(CollectorRegistry(), "s1", "dual-write", 0))
    view = open_phase_view(context, "m1")
    try:
        assert isinstance(view, StatePollingWatch) and view.current().phase is Phase.LEGACY
        moved = controller(store, open_gate()).move("m1", Phase.DUAL_RDBMS_PRIMARY, timeout_s=5)
        assert view.current() == moved.state and moved.laggards == []
    finally:
        view.close()
