"""Moving a migration's switch: the gate, the two-step flip (writers first, then readers), acks, and history.

A flip publishes the new phase with the old `reads`, waits until every live switch-aware instance acked that epoch,
then publishes the new `reads`: no reader moves to a store before every writer writes it first. A forward move whose
writers do not all ack in time goes back to where it was; a rollback is never gated and never goes back.
"""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from streams.errors import ConfigError, TuneflowError
from streams.migration.gate import Gate, GateCheck, gated
from streams.migration.phases import PHASES, InstanceAck, Phase, StoreRole, SwitchState, backward, forward, routing
from streams.migration.switch_bus import SILENT_AFTER_S, SwitchBus, alive
from streams.migration.switch_store import ChangeRecord, SwitchRecord, SwitchStore

WAIT_POLL_S = 0.05


class SwitchRefused(TuneflowError):
    """The gate said no (each reason listed), or the writers did not all ack in time."""

    def __init__(self, summary: str, reasons: list[str]) -> None:
        super().__init__(f"{summary}: {'; '.join(reasons)}")
        self.summary = summary
        self.reasons = reasons


@dataclass(frozen=True)
class SwitchView:
    """What `switch show` prints: the state, and every instance with the state it applies."""

    record: SwitchRecord
    instances: list[InstanceAck]  # live ones
    silent: list[InstanceAck]  # not heard of for SILENT_AFTER_S: gone, or hung

    @property
    def laggards(self) -> list[InstanceAck]:
        return [ack for ack in self.instances if ack.epoch < self.record.state.epoch]

    def to_json(self) -> dict[str, object]:
        state = self.record.state
        return {**state.to_json(), "phase_number": state.phase.number, "catch_up": self.record.catch_up,
                "instances": [ack.to_json() for ack in self.instances],
                "laggards": [ack.name for ack in self.laggards], "silent": [ack.to_json() for ack in self.silent]}


@dataclass(frozen=True)
class Move:
    """A finished change: the state reached, and the instances that had not acked it when the command returned."""

    change: ChangeRecord
    state: SwitchState
    laggards: list[InstanceAck] = field(default_factory=list)


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


class SwitchController:
    def __init__(self, store: SwitchStore, bus: SwitchBus, gate: Gate | None = None,
                 who: Callable[[], str] = current_user) -> None:
        self.store = store
        self.bus = bus
        self.gate = gate
        self._who = who

    def show(self, migration: str) -> SwitchView:
        record = self.store.get(migration)
        acks = sorted(self.bus.acks(migration), key=lambda a: a.name)
        live = alive(acks)
        return SwitchView(record, live, [ack for ack in acks if ack not in live])

    def target_of(self, migration: str, step: str) -> Phase:
        """The phase `forward` or `rollback` moves to from where the switch is (created at legacy if new)."""
        phase = self.store.ensure(migration).state.phase
        found = forward(phase) if step == "forward" else backward(phase)
        if found is None:
            edge = "last" if step == "forward" else "first"
            raise ConfigError(f"the switch of migration '{migration}' is at {phase}, the {edge} phase: "
                              f"nothing to {step} to")
        return found

    def move(self, migration: str, target: Phase, *, timeout_s: float = 30.0, force: bool = False,
             reason: str | None = None) -> Move:
        """Move the switch to `target`; SwitchRefused when the gate refuses (unless `force`) or when the writers
        of a forward move do not all ack within `timeout_s`."""
        if force and not reason:
            raise ConfigError("--force needs --reason TEXT: the history records who forced a flip and why")
        before = self.store.ensure(migration).state
        if target == before.phase:
            raise ConfigError(f"the switch of migration '{migration}' is already at {target}")
        rollback = PHASES.index(target) < PHASES.index(before.phase)
        checks = self._gate(before, target)
        failed = [check for check in checks if not check.ok]
        if failed and not force:
            self._record(before, target, before.epoch, reason, False, checks, "refused by the gate")
            reasons = [f"{check.name}: {check.detail}" for check in failed]
            raise SwitchRefused(f"switch of migration '{migration}' from {before.phase} to {target} refused by "
                                "the gate", reasons)
        forced = bool(failed)
        writers = self._publish(before, target, before.reads, before.epoch)
        laggards = self._await(writers, timeout_s)
        if laggards and not rollback:
            back = self._publish(writers, before.phase, before.reads, writers.epoch)
            named = _names(laggards)
            self._record(before, target, back.epoch, reason, forced, checks,
                         f"went back to {before.phase}: not acked within {timeout_s:g}s by {named}")
            raise SwitchRefused(f"switch of migration '{migration}' to {target} went back to {before.phase}: "
                                f"not every writer applied it within {timeout_s:g}s",
                                [f"not acked by {ack.name} (on {ack.phase}, epoch {ack.epoch})" for ack in laggards])
        final = writers
        if routing(target).reads != before.reads:
            final = self._publish(writers, target, routing(target).reads, writers.epoch)
            laggards = self._await(final, timeout_s)
        outcome = "done" if not laggards else f"done; not acked within {timeout_s:g}s by {_names(laggards)}"
        change = self._record(before, target, final.epoch, reason, forced, checks, outcome)
        return Move(change, final, laggards)

    def _gate(self, before: SwitchState, target: Phase) -> list[GateCheck]:
        if not gated(before.phase, target):
            return []
        if self.gate is None:
            return [GateCheck("gate", False, "no gate configured for this switch")]
        return self.gate.checks(before, self.bus.acks(before.migration))

    def _publish(self, current: SwitchState, phase: Phase, reads: StoreRole, expect_epoch: int) -> SwitchState:
        state = self.store.publish(current.migration, phase, reads, expect_epoch)
        self.bus.publish(state)
        return state

    def _await(self, state: SwitchState, timeout_s: float) -> list[InstanceAck]:
        """The live instances that have not acked `state` when `timeout_s` is over (none: all did)."""
        deadline = time.monotonic() + timeout_s
        while True:
            behind = [ack for ack in alive(self.bus.acks(state.migration)) if ack.epoch < state.epoch]
            if not behind or time.monotonic() >= deadline:
                return sorted(behind, key=lambda a: a.name)
            time.sleep(WAIT_POLL_S)

    def _record(self, before: SwitchState, target: Phase, epoch: int, reason: str | None, forced: bool,
                checks: list[GateCheck], outcome: str) -> ChangeRecord:
        change = ChangeRecord(before.migration, epoch, before.phase, target, datetime.now(UTC), self._who(), reason,
                              forced, [check.to_json() for check in checks] or None, outcome)
        self.store.add_change(change)
        return change


def _names(acks: list[InstanceAck]) -> str:
    return ", ".join(f"{ack.name} (on {ack.phase}, epoch {ack.epoch})" for ack in acks)


__all__ = ["SILENT_AFTER_S", "Move", "SwitchController", "SwitchRefused", "SwitchView", "current_user"]
