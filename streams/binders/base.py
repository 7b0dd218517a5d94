"""The binder contract both binders honour, so one stream runs in-process or over Kafka unchanged."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from streams.records import Record


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    lag: int


class InputBinding(Protocol):
    """A consumer in a consumer group; offsets advance only through `commit`."""

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to `max_records` records, waiting at most `timeout_s` for the first one."""
        ...

    def commit(self, records: Sequence[Record]) -> None:
        """Mark these records (and everything before them on their partitions) as done, synchronously.

        Called only after their outputs are durable: at-least-once.
        """
        ...

    def pause(self) -> None:
        """Stop fetching (keep group membership) while a downstream outage lasts."""
        ...

    def resume(self) -> None: ...

    def keepalive(self) -> None:
        """Serve the group protocol while paused (Kafka needs regular polls); returns no records."""
        ...

    def rewind(self, records: Sequence[Record]) -> None:
        """Seek back so that these uncommitted records are delivered again (after a failed batch)."""
        ...

    def lag(self) -> list[PartitionLag]: ...

    def on_revoke(self, hook: Callable[[], None]) -> None:
        """Call `hook` just before partitions are taken away, while this member may still commit them."""
        ...

    def close(self) -> None: ...


class OutputBinding(Protocol):
    """A producer; `flush` returns only when every record sent is durable, or raises."""

    def send(self, topic: str, records: Sequence[Record]) -> None: ...

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every record sent so far; raise TransientError if some were not delivered."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class TransactionalOutput(OutputBinding, Protocol):
    """Kafka-to-Kafka exactly-once: outputs and input offsets commit atomically."""

    def begin(self) -> None: ...

    def commit_with_offsets(self, source: InputBinding, records: Sequence[Record]) -> None: ...

    def abort(self) -> None: ...


class Binder(Protocol):
    name: str

    def input(self, topics: Sequence[str], group: str, instance: str) -> InputBinding: ...

    def output(self, transactional_id: str | None = None) -> OutputBinding: ...

    def ensure_topics(self, topics: Sequence[str], partitions: int = 1) -> None:
        """Create missing topics; an existing topic with fewer partitions grows to `partitions`."""
        ...

    def partitions(self, topic: str) -> int:
        """How many partitions `topic` has (0 if it does not exist)."""
        ...

    def group_lag(self, group: str, topics: Sequence[str]) -> int:
        """Records of `topics` not yet committed by consumer group `group` (all of them if it never committed)."""
        ...

    def close(self) -> None: ...
