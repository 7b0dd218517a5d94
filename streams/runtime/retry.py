"""The one retry policy: exponential backoff with jitter for transient errors, bounded in total time."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from streams.errors import TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    initial_s: float = 0.2
    max_delay_s: float = 10.0
    give_up_after_s: float = 600.0

    def delays(self) -> Callable[[int], float]:
        def delay(attempt: int) -> float:
            base = min(self.max_delay_s, self.initial_s * (2**attempt))
            return base * random.uniform(0.5, 1.0)

        return delay


class RetriesExhaustedError(TransientError):
    """A transient error outlasted the policy; the app stops without committing, so nothing is lost."""


def call_with_retries(
    operation: Callable[[], T],
    policy: RetryPolicy,
    on_retry: Callable[[int, TransientError, float], None],
    wait: Callable[[float], None] = time.sleep,
    stopping: Callable[[], bool] = lambda: False,
) -> T:
    """Run `operation`; on TransientError wait (via `wait`, which may serve keepalives) and try again."""
    delay_of = policy.delays()
    deadline = time.monotonic() + policy.give_up_after_s
    attempt = 0
    while True:
        try:
            return operation()
        except TransientError as exc:
            if time.monotonic() >= deadline or stopping():
                raise RetriesExhaustedError(f"gave up after {attempt + 1} attempts: {exc}") from exc
            delay = delay_of(attempt)
            on_retry(attempt, exc, delay)
            wait(delay)
            attempt += 1
