"""The hand-over between HTTP requests (the server's event loop) and the runner's batch loop (its own thread).

A request offers its validated records with a Ticket; the runner takes them in batches through the source's `poll`,
sends and flushes them with the binder's producer, and `ack` resolves each ticket once all of its records are
acknowledged by Kafka. Only then is the request answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Sequence
from enum import Enum

from streams.records import Record


class Delivery(Enum):
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"  # the source stopped before the records were taken: none of them was written
    PARTIAL = "partial"  # the source stopped after some were taken: those may be written, the rest are not


class Ticket:
    """One request's records on their way to Kafka."""

    __slots__ = ("future", "loop", "taken", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[Delivery] = loop.create_future()
        self.waiting = count  # records not yet acknowledged
        self.taken = 0  # records handed to the producer

    def resolve(self, delivery: Delivery) -> None:
        with contextlib.suppress(RuntimeError):  # the server's loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(_settle, self.future, delivery)


def _settle(future: asyncio.Future[Delivery], delivery: Delivery) -> None:
    if not future.done():
        future.set_result(delivery)


class Intake:
    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._queue: deque[tuple[Record, Ticket]] = deque()
        self._in_flight: deque[list[tuple[Ticket, int]]] = deque()
        self._closed = False

    def offer(self, records: Sequence[Record], ticket: Ticket) -> bool:
        """Queue the records for the producer; False once the source is closing."""
        with self._ready:
            if self._closed:
                return False
            self._queue.extend((record, ticket) for record in records)
            self._ready.notify()
        return True

    def take(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to `max_records`, waiting at most `timeout_s` for the first; they count as in flight until `ack`."""
        with self._ready:
            if not self._queue:
                self._ready.wait(timeout_s)
            count = min(max_records, len(self._queue))
            if not count:
                return []
            items = [self._queue.popleft() for _ in range(count)]
            per_ticket: dict[Ticket, int] = {}
            for _, ticket in items:
                per_ticket[ticket] = per_ticket.get(ticket, 0) + 1
            for ticket, taken in per_ticket.items():
                ticket.taken += taken
            self._in_flight.append(list(per_ticket.items()))
        return [record for record, _ in items]

    def ack(self, count: int) -> None:
        """The oldest batch taken (of `count` records) is durable in Kafka."""
        with self._ready:
            batch = self._in_flight.popleft()
        assert sum(taken for _, taken in batch) == count, "ack does not match the batch taken"
        for ticket, taken in batch:
            ticket.waiting -= taken
            if ticket.waiting == 0:
                ticket.resolve(Delivery.ACKNOWLEDGED)

    def withdraw(self, ticket: Ticket) -> int:
        """Take back the ticket's records the producer has not taken yet; returns how many it already took."""
        with self._ready:
            if any(owner is ticket for _, owner in self._queue):
                self._queue = deque(item for item in self._queue if item[1] is not ticket)
            return ticket.taken

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        """Refuse new offers and answer every waiting ticket: CLOSED when none of its records was taken, PARTIAL
        when some were (the batch in flight when the runner stopped during an outage may yet be written)."""
        with self._ready:
            self._closed = True
            dropped = {ticket for _, ticket in self._queue}
            dropped.update(ticket for batch in self._in_flight for ticket, _ in batch)
            self._queue.clear()
            self._in_flight.clear()
        for ticket in dropped:
            ticket.resolve(Delivery.PARTIAL if ticket.taken else Delivery.CLOSED)
