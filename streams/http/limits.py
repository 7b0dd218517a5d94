"""What one request may cost: body size, batch lines, read time, and a byte budget over every request in flight.

The budget bounds memory whatever the load: a request reserves its body's bytes before reading it and gives them
back once answered, so bodies, the records made from them and the records waiting for Kafka all fit in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                          "application/x-jsonlines", "application/jsonlines"})


@dataclass(frozen=True)
class Limits:
    max_body: int = 1 << 20
    max_batch: int = 1000
    max_buffered: int = 64 << 20
    body_timeout_s: float = 30.0
    ack_timeout_s: float = 30.0
    retry_after_s: int = 5


class Refused(Exception):
    """The request is answered with `status` and `message` (and `error`, a short code) before it is handled."""

    def __init__(self, status: int, error: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.headers = status, error, message, headers or {}


class ByteBudget:
    """Bytes held by requests in flight; used only from the server's event loop, so it needs no lock."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0


class Reservation:
    """The bytes one request holds in the budget, given back once when it is answered."""

    def __init__(self, budget: ByteBudget) -> None:
        self.budget = budget
        self.size = 0

    def grow_to(self, size: int) -> bool:
        if size <= self.size:
            return True
        if self.budget.used + size - self.size > self.budget.capacity:
            return False
        self.budget.used += size - self.size
        self.size = size
        return True

    def release(self) -> None:
        self.budget.used -= self.size
        self.size = 0


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def declared_length(value: str | None, limits: Limits) -> int | None:
    """The Content-Length, refused at once when over `max_body`, so the body is never read."""
    if value is None:
        return None
    if not value.strip().isdigit():
        raise Refused(400, "bad-request", "Content-Length must be a whole number of bytes")
    length = int(value)
    if length > limits.max_body:
        raise too_large(limits)
    return length


def too_large(limits: Limits) -> Refused:
    return Refused(413, "too-large", f"the body is larger than --max-body ({limits.max_body} bytes)",
                   {"Connection": "close"})


async def read_body(chunks: AsyncIterator[bytes], limits: Limits, reservation: Reservation) -> bytes:
    """The whole body, within `max_body` bytes and `body_timeout_s` seconds, its bytes held in `reservation`.

    Past a limit the reading stops there and the answer closes the connection: the rest is never read.
    """
    body = bytearray()
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            async for chunk in chunks:
                body += chunk
                if len(body) > limits.max_body:
                    raise too_large(limits)
                if not reservation.grow_to(len(body)):
                    raise busy(limits, "too many bytes in flight", unread=True)
    except TimeoutError:
        raise Refused(408, "timeout", f"the body did not arrive within {limits.body_timeout_s:g}s",
                      {"Connection": "close"}) from None
    return bytes(body)


def busy(limits: Limits, why: str, unread: bool = False) -> Refused:
    """503 with Retry-After; `unread`: the body was not read, so the connection closes."""
    headers = {"Retry-After": str(limits.retry_after_s)}
    if unread:
        headers["Connection"] = "close"
    return Refused(503, "unavailable", f"{why}; retry after {limits.retry_after_s}s", headers)


def ndjson_lines(body: bytes, limits: Limits) -> list[tuple[int, bytes]]:
    """(line number from 1, line) of every non-blank line; more than `max_batch` of them is a 413."""
    lines = [(number, line.rstrip(b"\r")) for number, line in enumerate(body.split(b"\n"), 1)]
    lines = [(number, line) for number, line in lines if line.strip()]
    if len(lines) > limits.max_batch:
        raise Refused(413, "too-many-lines", f"the batch has {len(lines)} lines; at most --max-batch "
                                             f"({limits.max_batch}) per request")
    return lines
