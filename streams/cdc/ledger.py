"""Which log position a CDC source may confirm: a transaction's end, once every change of it is durable downstream."""

from __future__ import annotations

from collections import deque


class AckLedger:
    """Counts changes handed to the runtime and changes it reported durable; a transaction's end becomes confirmable
    when the durable count covers every change emitted up to it. Positions are plain integers (an LSN, a binlog
    offset): only their order matters."""

    def __init__(self, confirmed: int = 0) -> None:
        self.confirmed = confirmed
        self._emitted = 0
        self._acked = 0
        self._ends: deque[tuple[int, int]] = deque()  # (changes emitted when the transaction ended, its end)

    @property
    def settled(self) -> bool:
        """Everything emitted is durable and no transaction end waits: the source may confirm what it has seen."""
        return self._acked >= self._emitted and not self._ends

    @property
    def emitted_count(self) -> int:
        return self._emitted

    @property
    def acked_count(self) -> int:
        return self._acked

    def emitted(self, count: int = 1) -> None:
        self._emitted += count

    def transaction_end(self, position: int) -> None:
        self._ends.append((self._emitted, position))
        self._settle()

    def acked(self, count: int) -> None:
        self._acked += count
        self._settle()

    def advance_idle(self, position: int) -> None:
        """Confirm a position past every change seen (a server keepalive's) when nothing is outstanding."""
        if self.settled:
            self.confirmed = max(self.confirmed, position)

    def forget_outstanding(self) -> None:
        """The connection was lost: what was not confirmed will be sent again from the confirmed position."""
        self._emitted = self._acked = 0
        self._ends.clear()

    def _settle(self) -> None:
        while self._ends and self._ends[0][0] <= self._acked:
            self.confirmed = max(self.confirmed, self._ends.popleft()[1])
