"""How many instances the autoscaler wants for a lag: one per `autoscale-lag` records, within bounds."""

from __future__ import annotations

import pytest

from streams.platform.autoscaler import Decision, wanted

POLICY = {"min": 1, "max": 4, "lag": 1000, "cooldown_s": 30.0}


@pytest.mark.parametrize(("lag", "partitions", "instances"), [
    (0, 8, 1),          # no lag: the minimum
    (999, 8, 1),
    (1001, 8, 2),
    (3500, 8, 4),
    (50_000, 8, 4),     # never past the maximum
    (50_000, 3, 3),     # nor past the partitions: a fourth instance would idle
    (50_000, 0, 4),     # partitions unknown (topic not there yet): the maximum bounds it
])
def test_instances_follow_the_lag_within_bounds_and_partitions(lag: int, partitions: int, instances: int) -> None:
    assert wanted(lag, partitions, POLICY) == instances


def test_the_minimum_holds_even_with_fewer_partitions() -> None:
    assert wanted(0, 1, {**POLICY, "min": 2}) == 2


def test_a_decision_says_why_in_the_history() -> None:
    assert Decision("slow", 1, 3, 12_345, 3).cause == "autoscale slow 1 → 3: lag 12,345 (3 partitions)"
