"""Harness pieces on their own: error isolation, retries."""

from __future__ import annotations

import pytest

from streams.errors import ConfigError, ServiceUnavailableError, TransientError
from streams.records import Record
from streams.runtime.contract import Outcome
from streams.runtime.retry import RetriesExhaustedError, RetryPolicy, call_with_retries
from streams.runtime.runner import isolate


def test_isolate_bisects_to_the_records_that_raise() -> None:
    batch = [Record(key=str(i).encode(), value=i) for i in range(100)]

    def fragile(records: list[Record]) -> Outcome:
        if any(r.value in (13, 77) for r in records):
            raise KeyError("boom")
        return Outcome(outputs=list(records))

    outcome = isolate(fragile, batch)
    assert sorted(r.value for r in outcome.outputs) == [i for i in range(100) if i not in (13, 77)]
    assert [(f.record.value, f.kind) for f in outcome.failures] == [(13, "error"), (77, "error")]
    assert "KeyError" in outcome.failures[0].reasons[0]["message"]


def test_isolate_lets_transient_errors_through() -> None:
    def down(records: list[Record]) -> Outcome:
        raise TransientError("store down")

    with pytest.raises(TransientError):
        isolate(down, [Record(key=None, value=1)])


@pytest.mark.parametrize("error", [ConfigError("wrong password for mongodb://app:***@db"),
                                   ServiceUnavailableError("cannot reach the store")])
def test_isolate_never_dead_letters_a_batch_for_settings_or_service_errors(error: Exception) -> None:
    seen: list[int] = []

    def misconfigured(records: list[Record]) -> Outcome:
        seen.append(len(records))
        raise error

    with pytest.raises(type(error), match=str(error).split()[0]):
        isolate(misconfigured, [Record(key=None, value=i) for i in range(8)])
    assert seen == [8]  # raised at once, no bisection into single-record failures


def test_retries_back_off_and_recover() -> None:
    calls, waits = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise TransientError("not yet")
        return "ok"

    policy = RetryPolicy(initial_s=0.1, max_delay_s=0.3)
    assert call_with_retries(flaky, policy, on_retry=lambda *a: None, wait=waits.append) == "ok"
    assert len(waits) == 3
    # Exponential with jitter in [half, full] of 0.1, 0.2, 0.3 (capped) seconds.
    assert 0.05 <= waits[0] <= 0.1
    assert 0.1 <= waits[1] <= 0.2
    assert 0.15 <= waits[2] <= 0.3


def test_retries_give_up_after_the_deadline() -> None:
    def never() -> None:
        raise TransientError("down")

    with pytest.raises(RetriesExhaustedError, match="gave up"):
        call_with_retries(never, RetryPolicy(initial_s=0.01, give_up_after_s=0.05), lambda *a: None)
