"""What both CDC change assemblers share: each change numbered in its transaction (`seq` from 1), and the newest
held back until the next one or the commit says whether it is the transaction's last, so `last` is exact without
buffering a transaction (a long one streams)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, Protocol, TypeVar


class Numbered(Protocol):
    seq: int
    last: bool


C = TypeVar("C", bound=Numbered)


class HeldBack(Generic[C]):
    __slots__ = ("_held", "count")

    def __init__(self) -> None:
        self.count = 0
        self._held: C | None = None

    @property
    def holding(self) -> bool:
        return self._held is not None

    def drop(self) -> None:
        """The transaction in progress never committed (the server lost its end): forget it."""
        self.count = 0
        self._held = None

    def add(self, changes: Iterable[C], out: list[Any]) -> None:
        """Number `changes` and append to `out` every one but the newest, which is held."""
        held = self._held
        count = self.count
        for change in changes:
            count += 1
            change.seq = count
            if held is not None:
                out.append(held)
            held = change
        self._held, self.count = held, count

    def end(self, out: list[Any]) -> int:
        """The transaction committed: append the held change, marked last; returns how many it had."""
        if self._held is not None:
            self._held.last = True
            out.append(self._held)
            self._held = None
        count, self.count = self.count, 0
        return count
