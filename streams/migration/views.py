"""Where a switch-aware app gets the phase it applies."""

from __future__ import annotations

from streams.migration.phases import FixedPhase, Phase, PhaseView, SwitchState, routing
from streams.runtime.contract import AppContext


def open_phase_view(migration: str, context: AppContext, phase: Phase) -> PhaseView:
    """The switch of `migration` as this app instance applies it: for now the fixed `phase` it was started with."""
    context.log.info("migration %s: applying phase %s", migration, phase.value)
    return FixedPhase(SwitchState(migration, phase, routing(phase).reads, 0))
