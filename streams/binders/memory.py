"""The in-process binder: Kafka's semantics (partitions, groups, offsets, transactions) without a broker.

One instance is shared by every app that should talk (the embedded deployer passes the same one to all).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence

from streams.binders.base import InputBinding, PartitionLag
from streams.binders.batch import TopicPartitionKey, first_offsets, next_offsets, wire_key, wire_value
from streams.binders.partitioner import partition_for
from streams.errors import ConfigError, ServiceUnavailableError
from streams.records import Record

log = logging.getLogger("tuneflow.binder.memory")


class MemoryBinder:
    name = "memory"

    def __init__(self) -> None:
        # One condition guards all state: polls wait on it, appends and rebalances wake them.
        self._cond = threading.Condition()
        self._logs: dict[str, list[list[Record]]] = {}
        self._committed: dict[tuple[str, str, int], int] = {}
        self._members: dict[str, dict[str, MemoryInput]] = {}
        self._round_robin: dict[str, int] = {}
        self._member_seq = itertools.count()
        self._closed = False

    # -- Binder ----------------------------------------------------------------------------------------------

    def input(self, topics: Sequence[str], group: str, instance: str) -> MemoryInput:
        with self._cond:
            self._check_open()
            member = MemoryInput(self, list(topics), group, f"{instance}#{next(self._member_seq):06d}")
            self._members.setdefault(group, {})[member.member_id] = member
            self._rebalance(group)
            return member

    def output(self, transactional_id: str | None = None) -> MemoryOutput:
        with self._cond:
            self._check_open()
        if transactional_id is not None:
            return MemoryTransactionalOutput(self, transactional_id)
        return MemoryOutput(self)

    def ensure_topics(self, topics: Sequence[str], partitions: int = 1) -> None:
        if partitions < 1:
            raise ConfigError(f"a topic needs at least 1 partition, not {partitions}")
        with self._cond:
            self._check_open()
            changed = False
            for topic in topics:
                log_ = self._logs.setdefault(topic, [])
                while len(log_) < partitions:  # grow, never shrink
                    log_.append([])
                    changed = True
            if changed:
                self._rebalance_all()

    def partitions(self, topic: str) -> int:
        with self._cond:
            return len(self._logs.get(topic, ()))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- inspection, for tests and the embedded deployer ---------------------------------------------------

    def committed(self, group: str, topic: str, partition: int) -> int | None:
        """The committed offset of a group on a partition (None if it never committed there)."""
        with self._cond:
            return self._committed.get((group, topic, partition))

    def end_offset(self, topic: str, partition: int) -> int:
        with self._cond:
            return len(self._logs[topic][partition])

    def group_lag(self, group: str, topics: Sequence[str]) -> int:
        with self._cond:
            return sum(len(log) - (self._committed.get((group, topic, partition)) or 0)
                       for topic in topics for partition, log in enumerate(self._logs.get(topic, [])))

    # -- internals (called with the condition held) ------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ServiceUnavailableError("the memory binder is closed")

    def _append(self, topic: str, records: Sequence[Record]) -> None:
        # Like a broker with auto.create.topics.enable (Kafka's default): writing creates a 1-partition topic.
        if topic not in self._logs:
            self._logs[topic] = [[]]
            self._rebalance_all()
        log_ = self._logs[topic]
        now_ms = time.time_ns() // 1_000_000
        for record in records:
            key = wire_key(record.key)
            if key is None:
                partition = self._round_robin.get(topic, 0) % len(log_)
                self._round_robin[topic] = partition + 1
            else:
                partition = partition_for(key, len(log_))
            log_[partition].append(Record(key, wire_value(record.value), dict(record.headers),
                                          topic, partition, len(log_[partition]), now_ms))
        self._cond.notify_all()

    def _rebalance_all(self) -> None:
        for group in list(self._members):
            self._rebalance(group)

    def _rebalance(self, group: str) -> None:
        """Deterministic assignment: per topic, partition p goes to subscriber p mod n by instance name."""
        members = sorted(self._members.get(group, {}).values(), key=lambda m: m.sort_key)
        assignment: dict[str, list[TopicPartitionKey]] = {m.member_id: [] for m in members}
        for topic in sorted({t for m in members for t in m.topics}):
            subscribers = [m for m in members if topic in m.topics]
            for partition in range(len(self._logs.get(topic, ()))):
                assignment[subscribers[partition % len(subscribers)].member_id].append((topic, partition))
        for member in members:
            member._assign(assignment[member.member_id])
        self._cond.notify_all()

    def _leave(self, member: MemoryInput) -> None:
        group = self._members.get(member.group, {})
        group.pop(member.member_id, None)
        if not group:
            self._members.pop(member.group, None)
        self._rebalance(member.group)


class MemoryInput:
    """One member of a consumer group; positions live here, committed offsets in the binder."""

    def __init__(self, binder: MemoryBinder, topics: list[str], group: str, member_id: str) -> None:
        self._binder = binder
        self.topics = topics
        self.group = group
        self.member_id = member_id
        instance, _, seq = member_id.rpartition("#")
        self.sort_key = (instance, int(seq))
        self._positions: dict[TopicPartitionKey, int] = {}
        self._paused = False
        self._closed = False
        self._turn = 0

    def _assign(self, partitions: list[TopicPartitionKey]) -> None:
        # Kept partitions keep their position (cooperative-sticky); new ones start at the committed offset.
        committed = self._binder._committed
        self._positions = {
            tp: self._positions[tp] if tp in self._positions else committed.get((self.group, *tp), 0)
            for tp in partitions
        }

    def assignment(self) -> list[TopicPartitionKey]:
        with self._binder._cond:
            return sorted(self._positions)

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        cond = self._binder._cond
        deadline = time.monotonic() + timeout_s
        with cond:
            while True:
                if self._closed or self._binder._closed:
                    return []
                if not self._paused and (batch := self._take(max_records)):
                    return batch
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                cond.wait(remaining)

    def _take(self, max_records: int) -> list[Record]:
        partitions = list(self._positions)
        if not partitions:
            return []
        self._turn = (self._turn + 1) % len(partitions)  # rotate so that no partition starves another
        batch: list[Record] = []
        for topic, partition in partitions[self._turn :] + partitions[: self._turn]:
            if len(batch) >= max_records:
                break
            position = self._positions[(topic, partition)]
            taken = self._binder._logs[topic][partition][position : position + max_records - len(batch)]
            # Copies: an app may decode values in place, and redelivery must see the original bytes.
            batch.extend(Record(r.key, r.value, dict(r.headers), r.topic, r.partition, r.offset,
                                r.timestamp_ms) for r in taken)
            self._positions[(topic, partition)] = position + len(taken)
        return batch

    def on_revoke(self, hook: Callable[[], None]) -> None:
        """Accepted for parity; a memory rebalance happens under the binder's lock, so the hook is not called.

        Records handled but not yet committed on a revoked partition are read again by its new owner.
        """

    def commit(self, records: Sequence[Record]) -> None:
        with self._binder._cond:
            self._binder._check_open()
            self._commit_locked(records)

    def _commit_locked(self, records: Sequence[Record]) -> None:
        for where, offset in next_offsets(records).items():
            if where in self._positions:
                self._binder._committed[(self.group, *where)] = offset
            else:  # revoked by a rebalance: its new owner reads it again from the committed offset
                log.info("not committing %s[%d]: no longer assigned to %s", *where, self.member_id)

    def pause(self) -> None:
        with self._binder._cond:
            self._paused = True

    def resume(self) -> None:
        with self._binder._cond:
            self._paused = False
            self._binder._cond.notify_all()

    def keepalive(self) -> None:
        """Nothing to serve in-process; group membership never times out here."""

    def rewind(self, records: Sequence[Record]) -> None:
        with self._binder._cond:
            for where, offset in first_offsets(records).items():
                if where in self._positions:
                    self._positions[where] = offset

    def lag(self) -> list[PartitionLag]:
        with self._binder._cond:
            logs = self._binder._logs
            return [PartitionLag(topic, partition, len(logs[topic][partition]) - position)
                    for (topic, partition), position in sorted(self._positions.items())]

    def close(self) -> None:
        with self._binder._cond:
            if not self._closed:
                self._closed = True
                self._positions = {}
                self._binder._leave(self)


class MemoryOutput:
    """Writes are visible as soon as `send` returns; nothing can fail to be delivered in-process."""

    def __init__(self, binder: MemoryBinder) -> None:
        self._binder = binder

    def send(self, topic: str, records: Sequence[Record]) -> None:
        with self._binder._cond:
            self._binder._check_open()
            self._binder._append(topic, records)

    def flush(self, timeout_s: float = 30.0) -> None:
        with self._binder._cond:
            self._binder._check_open()

    def close(self) -> None:
        """Nothing buffered to release."""


class MemoryTransactionalOutput(MemoryOutput):
    """Sends are held back until `commit_with_offsets`, so readers only ever see committed transactions."""

    def __init__(self, binder: MemoryBinder, transactional_id: str) -> None:
        super().__init__(binder)
        self.transactional_id = transactional_id
        self._pending: list[tuple[str, list[Record]]] | None = None

    def begin(self) -> None:
        with self._binder._cond:
            self._binder._check_open()
            if self._pending is not None:
                raise RuntimeError(f"transaction {self.transactional_id!r} is already open")
            self._pending = []

    def send(self, topic: str, records: Sequence[Record]) -> None:
        with self._binder._cond:
            self._binder._check_open()
            if self._pending is None:
                raise RuntimeError(f"begin() a transaction before sending on {self.transactional_id!r}")
            # Encode now, as a producer would, so a later change to the caller's records cannot leak in.
            self._pending.append((topic, [Record(wire_key(r.key), wire_value(r.value), dict(r.headers))
                                          for r in records]))

    def commit_with_offsets(self, source: InputBinding, records: Sequence[Record]) -> None:
        if not isinstance(source, MemoryInput) or source._binder is not self._binder:
            raise ConfigError("commit_with_offsets needs an input of the same memory binder")
        with self._binder._cond:
            self._binder._check_open()
            if self._pending is None:
                raise RuntimeError(f"no open transaction on {self.transactional_id!r}")
            for topic, batch in self._pending:
                self._binder._append(topic, batch)
            source._commit_locked(records)
            self._pending = None

    def abort(self) -> None:
        with self._binder._cond:
            self._pending = None

    def close(self) -> None:
        self.abort()
