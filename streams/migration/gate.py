"""The go/no-go gate before reads move to MongoDB: the shadow backlog is empty, the catch-up lag is bounded, a clean
verify is recent, and every app instance applies the current switch state. Each check says why it fails."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from streams.binders.base import Binder
from streams.dag import topics
from streams.dsl import StreamDefinition
from streams.errors import TuneflowError
from streams.migration.phases import PHASES, InstanceAck, Phase, SwitchState
from streams.migration.switch_bus import alive

DUAL_WRITE = "dual-write"
GATED = (Phase.DUAL_MONGO_PRIMARY, Phase.MONGO_ONLY)


@dataclass(frozen=True)
class GateCheck:
    name: str
    ok: bool
    detail: str  # the value found when ok; the reason for refusing when not

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class ConsumedTopics:
    """Topics a consumer group reads: a dual-write sink's repair topic, or the inner topics of a catch-up stream."""

    group: str
    topics: tuple[str, ...]


class LatestCleanVerify(Protocol):
    def __call__(self, migration: str) -> datetime | None:
        """When the newest clean `verify` of `migration` finished; None when none is recorded."""
        ...


NO_CATCH_UP = "none"  # `--catch-up none`: the migration has no catch-up stream
NONE_DECLARED = ConsumedTopics("", ())


def no_verify_recorded(migration: str) -> datetime | None:
    """The stand-in until verify runs are recorded: there is never one, so the gate refuses."""
    return None


def gated(current: Phase, target: Phase) -> bool:
    """A move forward into a phase that reads from MongoDB passes the gate; a rollback never does."""
    return PHASES.index(target) > PHASES.index(current) and target in GATED


def repair_topics(definitions: Iterable[StreamDefinition], migration: str) -> list[ConsumedTopics]:
    """The repair topic (`<stream>.<label>.repair`, read by group of the same name) of each `dual-write` app in
    `definitions` that writes for `migration` (or names no migration)."""
    found = []
    for definition in definitions:
        for node in definition.apps:
            if node.app == DUAL_WRITE and node.options.get("migration", migration) == migration:
                topic = f"{definition.name}.{node.label}.repair"
                found.append(ConsumedTopics(topic, (topic,)))
    return found


def catch_up_topics(definition: StreamDefinition) -> ConsumedTopics:
    """Every topic the catch-up stream's apps read, with the stream's consumer group."""
    inputs = [topic for flow in topics(definition) for topic in flow.inputs]
    return ConsumedTopics(definition.name, tuple(dict.fromkeys(inputs)))


def shadow_backlog(binder: Binder, repairs: Sequence[ConsumedTopics]) -> GateCheck:
    """Empty when no repair topic of a dual-write sink holds a shadow write not yet replayed."""
    name = "shadow backlog"
    if not repairs:
        return GateCheck(name, True, "no dual-write sink deployed")
    waiting = {}
    for repair in repairs:
        try:
            waiting[repair.group] = binder.group_lag(repair.group, repair.topics)
        except TuneflowError as exc:
            return GateCheck(name, False, f"cannot read the backlog of {repair.group}: {exc}")
    behind = {topic: count for topic, count in waiting.items() if count > 0}
    if behind:
        listed = ", ".join(f"{topic} {count:,}" for topic, count in sorted(behind.items()))
        return GateCheck(name, False, f"shadow writes still to repair: {listed}")
    return GateCheck(name, True, f"empty ({', '.join(sorted(waiting))})")


def catch_up_lag(binder: Binder | None, catch_up: ConsumedTopics | None, max_lag: int) -> GateCheck:
    name = "catch-up lag"
    if catch_up is None:
        return GateCheck(name, False, f"no catch-up stream known: name it once with --catch-up STREAM (or "
                                      f"--catch-up {NO_CATCH_UP} if every write goes through dual-write)")
    if catch_up is NONE_DECLARED:
        return GateCheck(name, True, "no catch-up stream: every write goes through dual-write")
    assert binder is not None, "a catch-up stream's lag is read through a binder"
    try:
        lag = binder.group_lag(catch_up.group, catch_up.topics)
    except TuneflowError as exc:
        return GateCheck(name, False, f"cannot read the lag of stream {catch_up.group}: {exc}")
    if lag > max_lag:
        return GateCheck(name, False, f"stream {catch_up.group} is {lag:,} changes behind (bound {max_lag:,})")
    return GateCheck(name, True, f"stream {catch_up.group} is {lag:,} changes behind (bound {max_lag:,})")


def recent_verify(latest_clean_verify: LatestCleanVerify, migration: str, max_age: timedelta,
                  now: datetime | None = None) -> GateCheck:
    name = "clean verify"
    try:
        finished = latest_clean_verify(migration)
    except TuneflowError as exc:
        return GateCheck(name, False, f"cannot read the verify runs: {exc}")
    if finished is None:
        return GateCheck(name, False, f"no clean verify recorded (or the newest one found differences): run "
                                      f"`tuneflow verify … --migration {migration}`")
    age = (now or datetime.now(UTC)) - finished
    when = f"{finished.isoformat(timespec='seconds')} ({_duration(age)} ago)"
    if age > max_age:
        return GateCheck(name, False, f"the last clean verify is too old: {when}, bound {_duration(max_age)}")
    return GateCheck(name, True, f"clean at {when}")


def apps_on_current(state: SwitchState, acks: Sequence[InstanceAck], now: float | None = None) -> GateCheck:
    name = "apps on the current phase"
    live = alive(list(acks), now)
    behind = sorted((ack for ack in live if ack.epoch < state.epoch), key=lambda a: a.name)
    if behind:
        listed = ", ".join(f"{ack.name} ({ack.phase}, epoch {ack.epoch})" for ack in behind)
        return GateCheck(name, False, f"not yet on {state.phase} (epoch {state.epoch}): {listed}")
    return GateCheck(name, True, f"{len(live)} instance(s) on {state.phase} (epoch {state.epoch})")


@dataclass
class Gate:
    """What the checks read: the binder the streams run on, the repair topics and catch-up stream of the
    migration, the bounds, and where clean verifies are recorded."""

    binder: Binder | None
    repairs: Sequence[ConsumedTopics]
    catch_up: ConsumedTopics | None
    max_lag: int
    max_verify_age: timedelta
    latest_clean_verify: LatestCleanVerify = no_verify_recorded

    def checks(self, state: SwitchState, acks: Sequence[InstanceAck]) -> list[GateCheck]:
        if self.binder is None:
            unseen = "not readable here: the memory binder's topics live in the process that runs the stream"
            kafka = [GateCheck("shadow backlog", False, unseen),
                     catch_up_lag(None, NONE_DECLARED, 0) if self.catch_up is NONE_DECLARED
                     else GateCheck("catch-up lag", False, unseen)]
        else:
            kafka = [shadow_backlog(self.binder, self.repairs), catch_up_lag(self.binder, self.catch_up, self.max_lag)]
        return [*kafka, recent_verify(self.latest_clean_verify, state.migration, self.max_verify_age),
                apps_on_current(state, acks, time.time())]


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
