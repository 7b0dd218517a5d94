"""Each migration's switch in the platform state: its phase, reads and epoch, its history, and the acks of app
instances that poll the state database instead of the control topic."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from streams.errors import ConfigError
from streams.migration.phases import InstanceAck, Phase, StoreRole, SwitchState, routing
from streams.state.models import MigrationSwitch, SwitchAck, SwitchChange, utcnow
from streams.state.store import StateTables
from streams.suggest import did_you_mean

MIGRATION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


class SwitchConflict(ConfigError):
    """The switch changed between reading it and writing it: another `tuneflow switch` command moved it."""


@dataclass(frozen=True)
class SwitchRecord:
    state: SwitchState
    catch_up: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ChangeRecord:
    """One entry of a switch's history."""

    migration: str
    epoch: int
    from_phase: Phase
    to_phase: Phase
    at: datetime
    who: str
    reason: str | None
    forced: bool
    gate: list[dict[str, Any]] | None
    outcome: str

    def to_json(self) -> dict[str, Any]:
        return {"migration": self.migration, "epoch": self.epoch, "from": self.from_phase.value,
                "to": self.to_phase.value, "at": self.at.isoformat(), "who": self.who, "reason": self.reason,
                "forced": self.forced, "gate": self.gate, "outcome": self.outcome}


def check_migration_name(name: str) -> str:
    if not MIGRATION_NAME.match(name):
        raise ConfigError(f"invalid migration name {name!r}: up to 255 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    return name


class SwitchStore(StateTables):
    """The `migration_switches`, `switch_history` and `switch_acks` tables, one transaction per call."""

    def names(self) -> list[str]:
        with self._session() as session:
            return list(session.scalars(select(MigrationSwitch.migration).order_by(MigrationSwitch.migration)))

    def find(self, migration: str) -> SwitchRecord | None:
        with self._session() as session:
            row = session.get(MigrationSwitch, migration)
            return None if row is None else _record(row)

    def get(self, migration: str) -> SwitchRecord:
        """The switch of `migration`; ConfigError naming the known ones when there is none."""
        with self._session() as session:
            row = session.get(MigrationSwitch, migration)
            if row is None:
                known = session.scalars(select(MigrationSwitch.migration)).all()
                raise ConfigError(f"migration '{migration}' has no switch yet.{did_you_mean(migration, known)} "
                                  f"`tuneflow switch forward --migration {migration}` creates it at legacy")
            return _record(row)

    def ensure(self, migration: str) -> SwitchRecord:
        """The switch of `migration`, created at `legacy` (epoch 0) when it has none."""
        check_migration_name(migration)
        with self._session(write=True) as session:
            row = session.get(MigrationSwitch, migration)
            if row is None:
                row = MigrationSwitch(migration=migration, phase=Phase.LEGACY.value,
                                      reads=routing(Phase.LEGACY).reads.value, epoch=0)
                session.add(row)
                session.flush()
            return _record(row)

    def set_catch_up(self, migration: str, stream: str | None) -> None:
        with self._session(write=True) as session:
            _row(session, migration).catch_up = stream

    def publish(self, migration: str, phase: Phase, reads: StoreRole, expect_epoch: int) -> SwitchState:
        """Store `phase` and `reads` under the next epoch, if the switch is still at `expect_epoch`."""
        with self._session(write=True) as session:
            row = _row(session, migration, lock=True)
            if row.epoch != expect_epoch:
                raise SwitchConflict(f"the switch of migration '{migration}' moved meanwhile (now {row.phase}, "
                                     f"epoch {row.epoch}): left as it is")
            row.phase, row.reads, row.epoch = phase.value, reads.value, row.epoch + 1
            session.flush()
            return _record(row).state

    def add_change(self, change: ChangeRecord) -> None:
        with self._session(write=True) as session:
            session.add(SwitchChange(migration=change.migration, epoch=change.epoch,
                                     from_phase=change.from_phase.value, to_phase=change.to_phase.value,
                                     at=change.at, who=change.who, reason=change.reason, forced=change.forced,
                                     gate=change.gate, outcome=change.outcome))

    def history(self, migration: str) -> list[ChangeRecord]:
        self.get(migration)
        query = select(SwitchChange).where(SwitchChange.migration == migration).order_by(SwitchChange.id)
        with self._session() as session:
            return [ChangeRecord(row.migration, row.epoch, Phase(row.from_phase), Phase(row.to_phase), row.at,
                                 row.who, row.reason, row.forced, row.gate, row.outcome)
                    for row in session.scalars(query)]

    # --- acks of state-polling instances ------------------------------------------------------------------

    def ack(self, ack: InstanceAck) -> None:
        at = datetime.fromtimestamp(ack.at, UTC)
        with self._session(write=True) as session:
            row = session.get(SwitchAck, (ack.migration, ack.stream, ack.app, ack.instance))
            if row is None:
                session.add(SwitchAck(migration=ack.migration, stream=ack.stream, app=ack.app,
                                      instance=ack.instance, epoch=ack.epoch, phase=ack.phase.value, at=at))
            else:
                row.epoch, row.phase, row.at = ack.epoch, ack.phase.value, at

    def forget_ack(self, migration: str, stream: str, app: str, instance: str) -> None:
        with self._session(write=True) as session:
            session.execute(delete(SwitchAck).where(SwitchAck.migration == migration, SwitchAck.stream == stream,
                                                    SwitchAck.app == app, SwitchAck.instance == instance))

    def acks(self, migration: str) -> list[InstanceAck]:
        query = select(SwitchAck).where(SwitchAck.migration == migration)
        with self._session() as session:
            return [InstanceAck(row.migration, row.stream, row.app, row.instance, row.epoch, Phase(row.phase),
                                row.at.timestamp()) for row in session.scalars(query)]


def _row(session: Session, migration: str, lock: bool = False) -> MigrationSwitch:
    query = select(MigrationSwitch).where(MigrationSwitch.migration == migration)
    row = session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise ConfigError(f"migration '{migration}' has no switch yet")
    return row


def _record(row: MigrationSwitch) -> SwitchRecord:
    state = SwitchState(row.migration, Phase(row.phase), StoreRole(row.reads), row.epoch)
    return SwitchRecord(state, row.catch_up, row.created_at or utcnow(), row.updated_at or utcnow())
