"""The phases of a migration's switch, and what each means for writers and readers.

`legacy` (RDBMS only) → `dual-rdbms-primary` (both written, reads from the RDBMS, shadow reads compared) →
`dual-mongo-primary` (MongoDB primary for reads and writes, the RDBMS still written) → `mongo-only`.

A `SwitchState` is what the control topic carries and what every switch-aware app applies. Its `reads` moves only
after every writer has applied `phase`, so no reader sees an older version after a flip than before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class Phase(StrEnum):
    LEGACY = "legacy"
    DUAL_RDBMS_PRIMARY = "dual-rdbms-primary"
    DUAL_MONGO_PRIMARY = "dual-mongo-primary"
    MONGO_ONLY = "mongo-only"

    @property
    def number(self) -> int:
        """The phase as the `tuneflow_switch_phase` gauge reports it: 0 (legacy) … 3 (mongo-only)."""
        return PHASES.index(self)


PHASES: tuple[Phase, ...] = tuple(Phase)


class StoreRole(StrEnum):
    RDBMS = "rdbms"
    MONGO = "mongo"


@dataclass(frozen=True, slots=True)
class Routing:
    """Where a phase sends writes (primary first, then the shadow, if any) and reads."""

    primary: StoreRole
    shadow: StoreRole | None
    reads: StoreRole
    compare_reads: bool  # read the other store too, on a sample, and count mismatches


ROUTING: dict[Phase, Routing] = {
    Phase.LEGACY: Routing(StoreRole.RDBMS, None, StoreRole.RDBMS, False),
    Phase.DUAL_RDBMS_PRIMARY: Routing(StoreRole.RDBMS, StoreRole.MONGO, StoreRole.RDBMS, True),
    Phase.DUAL_MONGO_PRIMARY: Routing(StoreRole.MONGO, StoreRole.RDBMS, StoreRole.MONGO, False),
    Phase.MONGO_ONLY: Routing(StoreRole.MONGO, None, StoreRole.MONGO, False),
}


def routing(phase: Phase) -> Routing:
    return ROUTING[phase]


def forward(phase: Phase) -> Phase | None:
    """The next phase, None after the last."""
    index = PHASES.index(phase)
    return PHASES[index + 1] if index + 1 < len(PHASES) else None


def backward(phase: Phase) -> Phase | None:
    """The previous phase, None before the first."""
    index = PHASES.index(phase)
    return PHASES[index - 1] if index > 0 else None


@dataclass(frozen=True, slots=True)
class SwitchState:
    """One migration's switch as broadcast: the phase writers apply, the store readers read, and an epoch that
    grows with every change (apps report the epoch they applied)."""

    migration: str
    phase: Phase
    reads: StoreRole
    epoch: int

    def to_json(self) -> dict[str, Any]:
        return {"migration": self.migration, "phase": self.phase.value, "reads": self.reads.value,
                "epoch": self.epoch}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> SwitchState:
        return cls(str(value["migration"]), Phase(value["phase"]), StoreRole(value["reads"]), int(value["epoch"]))


@dataclass(frozen=True, slots=True)
class InstanceAck:
    """What one switch-aware app instance reports: the switch state it applies (`at`: Unix time it said so)."""

    migration: str
    stream: str
    app: str
    instance: str
    epoch: int
    phase: Phase
    at: float

    @property
    def name(self) -> str:
        return f"{self.stream}/{self.app}/{self.instance}"

    def to_json(self) -> dict[str, Any]:
        return {"migration": self.migration, "stream": self.stream, "app": self.app, "instance": self.instance,
                "epoch": self.epoch, "phase": self.phase.value, "at": self.at}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> InstanceAck:
        return cls(str(value["migration"]), str(value["stream"]), str(value["app"]), str(value["instance"]),
                   int(value["epoch"]), Phase(value["phase"]), float(value["at"]))


class PhaseView(Protocol):
    """What a switch-aware app holds: the state it applies now (updated live, without a restart)."""

    def current(self) -> SwitchState: ...


@dataclass(slots=True)
class FixedPhase:
    """A view that never changes, for unit tests and runs without a control topic."""

    state: SwitchState

    def current(self) -> SwitchState:
        return self.state
