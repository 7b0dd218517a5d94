"""`tuneflow switch`: show and move a migration's switch (legacy → dual-rdbms-primary → dual-mongo-primary →
mongo-only), gated before reads move to MongoDB, with a history of who moved it and why."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import click

from streams.cli.errors import EXIT_FAILURE
from streams.migration.gate import NO_CATCH_UP
from streams.migration.phases import PHASES, InstanceAck, Phase
from streams.migration.switch import Move, SwitchController, SwitchRefused, SwitchView
from streams.migration.switch_store import ChangeRecord, SwitchStore, check_migration_name
from streams.state import StateStore

F = TypeVar("F", bound=Callable[..., Any])
DURATION = re.compile(r"^(\d+)([smhd]?)$")


@click.group("switch")
def switch() -> None:
    """The migration switch, one per migration: where writes and reads go.

    \b
    Phases: legacy (RDBMS only) → dual-rdbms-primary (both written, reads from the RDBMS)
            → dual-mongo-primary (MongoDB primary, the RDBMS still written) → mongo-only.
    Moving reads to MongoDB passes a gate: shadow backlog empty, catch-up lag bounded, a recent clean verify,
    every app on the current phase. A rollback is never gated.
    """


def _common(command: F) -> F:
    command = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(command)
    command = click.option("--binder", "binder_name", type=click.Choice(["kafka", "memory"]), default="kafka",
                           show_default=True,
                           help="How apps learn of the switch: the Kafka control topic, or (memory: `tuneflow run` "
                                "and the demo) the state database they poll.")(command)
    return click.option("--migration", help="The migration whose switch this is [default: the only one].")(command)


def _moving(command: F) -> F:
    command = click.option("--timeout", "timeout_s", type=click.FloatRange(0.1), default=30.0, show_default=True,
                           help="Seconds to wait for every app instance to apply the change.")(command)
    command = click.option("--reason", help="Why (recorded in the history; needed with --force).")(command)
    command = click.option("--force", is_flag=True, help="Move even though the gate refuses (needs --reason).")(
        command)
    command = click.option("--max-lag", type=click.IntRange(0), default=1000, show_default=True,
                           help="Gate: the catch-up stream may be at most this many changes behind.")(command)
    command = click.option("--max-verify-age", default="24h", show_default=True,
                           help="Gate: the last clean verify may be at most this old (e.g. 90m, 24h, 3600).")(command)
    return click.option("--catch-up", "catch_up", metavar="STREAM",
                        help="The migration's catch-up stream (remembered), whose lag the gate bounds; "
                             f"'{NO_CATCH_UP}' declares that the migration has none (every write goes through "
                             "dual-write).")(command)


@switch.command("show")
@_common
def show(migration: str | None, binder_name: str, as_json: bool) -> None:
    """The phase, epoch and read store, and every app instance with the state it applies."""
    with _controller(binder_name) as (controller, _):
        view = controller.show(_migration(controller.store, migration))
    if as_json:
        click.echo(json.dumps(view.to_json(), indent=2))
        return
    for line in _show_text(view):
        click.echo(line)


@switch.command("history")
@_common
def history(migration: str | None, binder_name: str, as_json: bool) -> None:
    """Every change of the switch: from, to, when, who, why, forced or not, what the gate found, the outcome."""
    with _controller(binder_name) as (controller, _):
        changes = controller.store.history(_migration(controller.store, migration))
    if as_json:
        click.echo(json.dumps([change.to_json() for change in changes], indent=2))
        return
    for change in changes:
        click.echo(_change_text(change))


@switch.command("set")
@click.argument("phase", type=click.Choice([phase.value for phase in PHASES]))
@_common
@_moving
def set_phase(phase: str, **options: Any) -> int:
    """Move the switch to PHASE (created at legacy if new); a move back is a rollback, never gated."""
    return _move(lambda controller, name: Phase(phase), **options)


@switch.command("forward")
@_common
@_moving
def forward_phase(**options: Any) -> int:
    """Move the switch one phase forward (created at legacy if new)."""
    return _move(lambda controller, name: controller.target_of(name, "forward"), **options)


@switch.command("rollback")
@_common
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.1), default=30.0, show_default=True,
              help="Seconds to wait for the writers before the readers move back anyway (writes move at once; "
                   "readers that move before every writer acked may miss the writes of the batch in flight).")
@click.option("--reason", help="Why (recorded in the history).")
def rollback(migration: str | None, binder_name: str, as_json: bool, timeout_s: float, reason: str | None) -> int:
    """Move the switch one phase back, at once: no gate, and readers move back even if a writer is late."""
    return _move(lambda controller, name: controller.target_of(name, "rollback"), migration=migration,
                 binder_name=binder_name, as_json=as_json, timeout_s=timeout_s, reason=reason, force=False,
                 max_lag=0, max_verify_age="0", catch_up=None, gated=False)


def _move(target: Callable[[SwitchController, str], Phase], *, migration: str | None, binder_name: str,
          as_json: bool, timeout_s: float, reason: str | None, force: bool, max_lag: int, max_verify_age: str,
          catch_up: str | None, gated: bool = True) -> int:
    if force and not reason:
        raise click.UsageError("--force needs --reason TEXT: the history records who forced a flip and why")
    max_age = _duration(max_verify_age)
    with _controller(binder_name) as (controller, state):
        name = _migration(controller.store, migration, create=True)
        phase = target(controller, name)
        if catch_up is not None:
            if catch_up != NO_CATCH_UP:
                state.get_stream(catch_up)
            controller.store.set_catch_up(name, catch_up)
        if gated:
            controller.gate = _gate(state, controller.store, name, binder_name, max_lag, max_age)
        try:
            move = controller.move(name, phase, timeout_s=timeout_s, force=force, reason=reason)
        except SwitchRefused as refused:
            if as_json:
                click.echo(json.dumps({"ok": False, "error": refused.summary, "reasons": refused.reasons},
                                      indent=2))
            else:
                click.echo(f"Error: {refused.summary}:", err=True)
                for line in refused.reasons:
                    click.echo(f"  - {line}", err=True)
            return EXIT_FAILURE
    if as_json:
        click.echo(json.dumps({"ok": True, **move.state.to_json(), "change": move.change.to_json(),
                               "laggards": [ack.name for ack in move.laggards]}, indent=2))
    else:
        _move_text(move)
    return 0


@contextlib.contextmanager
def _controller(binder_name: str) -> Iterator[tuple[SwitchController, StateStore]]:
    from streams.state import open_state

    state = open_state()
    store = SwitchStore(state)
    bus: Any
    if binder_name == "kafka":
        from streams.binders.factory import create_binder
        from streams.migration.switch_bus import KafkaSwitchBus

        bus = KafkaSwitchBus(create_binder("kafka"))  # type: ignore[arg-type]
    else:
        from streams.migration.switch_bus import StateSwitchBus

        bus = StateSwitchBus(store)
    try:
        yield SwitchController(store, bus), state
    finally:
        bus.close()
        state.close()


def _gate(state: StateStore, store: SwitchStore, migration: str, binder_name: str, max_lag: int,
          max_age: timedelta) -> Any:
    from streams.binders.factory import create_binder
    from streams.dsl import parse
    from streams.migration.gate import NONE_DECLARED, Gate, catch_up_topics, repair_topics
    from streams.migration.verify_runs import clean_verify_of_migration
    from streams.state import StreamStatus

    deployed = [parse(s.name, s.canonical) for s in state.list_streams() if s.status == StreamStatus.DEPLOYED]
    record = store.find(migration)
    catch_up = None
    if record is not None and record.catch_up == NO_CATCH_UP:
        catch_up = NONE_DECLARED
    elif record is not None and record.catch_up is not None:
        stream = state.get_stream(record.catch_up)
        catch_up = catch_up_topics(parse(stream.name, stream.canonical))
    binder = create_binder("kafka") if binder_name == "kafka" else None
    return Gate(binder, repair_topics(deployed, migration), catch_up, max_lag, max_age,
                lambda name: clean_verify_of_migration(state, name))


def _migration(store: SwitchStore, given: str | None, create: bool = False) -> str:
    if given is not None:
        return check_migration_name(given)
    names = store.names()
    if len(names) == 1:
        return names[0]
    if not names:
        hint = "name it with --migration NAME" if create else \
            "create one with `tuneflow switch forward --migration NAME`"
        raise click.UsageError(f"no migration has a switch yet: {hint}")
    raise click.UsageError(f"several migrations have a switch ({', '.join(names)}): say which with --migration")


def _duration(text: str) -> timedelta:
    match = DURATION.match(text.strip())
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration: give seconds, or a number with s, m, h or d",
                                 param_hint="--max-verify-age")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return timedelta(seconds=int(match.group(1)) * unit)


def _show_text(view: SwitchView) -> list[str]:
    state = view.record.state
    lines = [f"migration {state.migration}: phase {state.phase} ({state.phase.number}), epoch {state.epoch}, "
             f"reads from {state.reads}"
             + (f", catch-up stream {view.record.catch_up}" if view.record.catch_up else "")]
    if not view.instances:
        lines.append("no app instance watches this switch")
    now = time.time()
    for ack in view.instances:
        mark = "" if ack.epoch >= state.epoch else "   ← not on the current phase"
        lines.append(f"  {ack.name:<40} {ack.phase:<20} epoch {ack.epoch:<5} acked {now - ack.at:.1f}s ago{mark}")
    laggards = view.laggards
    if laggards:
        lines.append(f"not yet on the current phase ({state.phase}, epoch {state.epoch}): "
                     + ", ".join(_ack_text(ack) for ack in laggards))
    elif view.instances:
        lines.append(f"all {len(view.instances)} instance(s) on the current phase")
    for ack in view.silent:
        lines.append(f"silent for {now - ack.at:.0f}s (stopped, or hung?): {_ack_text(ack)}")
    return lines


def _ack_text(ack: InstanceAck) -> str:
    return f"{ack.name} ({ack.phase}, epoch {ack.epoch})"


def _change_text(change: ChangeRecord) -> str:
    lines = [f"{change.at.isoformat(timespec='seconds')}  epoch {change.epoch:<4} {change.from_phase} → "
             f"{change.to_phase}  by {change.who}{'  FORCED' if change.forced else ''}  — {change.outcome}"]
    if change.reason:
        lines.append(f"    reason: {change.reason}")
    for check in change.gate or []:
        lines.append(f"    gate: {check['check']}: {'ok' if check['ok'] else 'NO'} — {check['detail']}")
    return "\n".join(lines)


def _move_text(move: Move) -> None:
    change, state = move.change, move.state
    click.echo(f"migration {state.migration}: {change.from_phase} → {state.phase} (epoch {state.epoch}, reads from "
               f"{state.reads})")
    if change.forced:
        click.echo(f"forced past the gate by {change.who}: {change.reason}")
    for ack in move.laggards:
        click.echo(f"warning: {_ack_text(ack)} has not applied it yet", err=True)
