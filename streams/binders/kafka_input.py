"""A consumer-group member on confluent-kafka: batch poll, explicit synchronous commits, pause and rewind."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streams.binders.base import PartitionLag
from streams.binders.batch import TopicPartitionKey, first_offsets, next_offsets
from streams.binders.kafka_common import describe, error_of, log, partition_counts
from streams.errors import TransientError, TuneflowError
from streams.records import Headers, Record

# A commit refused for these reasons means a rebalance took (some of) the partitions away: their new owner
# reads from the last committed offset, so skipping this commit only causes redelivery (at-least-once).
_REBALANCED = {
    KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.STALE_MEMBER_EPOCH, KafkaError.FENCED_MEMBER_EPOCH, KafkaError._ASSIGNMENT_LOST,
    KafkaError._NO_OFFSET, KafkaError._STATE,
}


class KafkaInput:
    def __init__(self, config: dict[str, Any], topics: Sequence[str], bootstrap: str,
                 timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._cooperative = "cooperative" in str(config.get("partition.assignment.strategy", ""))
        self._paused = False
        self._closed = False
        self._revoke_hook: Callable[[], None] | None = None
        self._consumer = Consumer(config)
        try:
            partition_counts(self._consumer, bootstrap, timeout_s)  # fails fast, naming the broker
        except Exception:
            self._consumer.close()
            raise
        self._consumer.subscribe(list(topics), on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)

    # -- records ---------------------------------------------------------------------------------------------

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        try:
            messages = self._consumer.consume(max(1, max_records), timeout_s)
        except KafkaException as exc:
            raise TransientError(f"Kafka consume failed: {describe(exc)}") from exc
        return self._records(messages)

    def _records(self, messages: list[Message]) -> list[Record]:
        records: list[Record] = []
        append = records.append
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_message_error(error)
                continue
            headers = message.headers()
            kind, timestamp = message.timestamp()
            append(Record(message.key(), message.value(),
                          _headers(headers) if headers else {},
                          message.topic(), message.partition(), message.offset(),
                          timestamp if kind else None))  # kind 0: TIMESTAMP_NOT_AVAILABLE
        return records

    def _on_message_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise TransientError(f"Kafka consumer failed: {describe(error)}")
        log.warning("kafka consumer: %s", describe(error))  # librdkafka retries these by itself

    # -- offsets ---------------------------------------------------------------------------------------------

    def commit(self, records: Sequence[Record]) -> None:
        offsets = self.offsets_to_commit(records)
        if not offsets:
            return
        try:
            committed = self._consumer.commit(offsets=offsets, asynchronous=False) or []
        except KafkaException as exc:
            self._commit_failed(error_of(exc))
            return
        for partition in committed:
            if partition.error is not None:
                self._commit_failed(partition.error, f"{partition.topic}[{partition.partition}]")

    def offsets_to_commit(self, records: Sequence[Record]) -> list[TopicPartition]:
        """Next offsets of the batch, for the partitions this member still owns (never a revoked one)."""
        owned = self._owned()
        offsets = []
        for (topic, partition), offset in next_offsets(records).items():
            if (topic, partition) in owned:
                offsets.append(TopicPartition(topic, partition, offset))
            else:
                log.info("not committing %s[%d]: revoked by a rebalance, its new owner reads it again",
                         topic, partition)
        return offsets

    def _commit_failed(self, error: KafkaError, where: str = "") -> None:
        if error.code() in _REBALANCED:
            log.warning("commit %s skipped after a rebalance (%s); those records will be read again",
                        where, describe(error))
            return
        raise TransientError(f"Kafka commit {where} failed: {describe(error)}".replace("  ", " "))

    def group_metadata(self) -> Any:
        return self._consumer.consumer_group_metadata()

    def assignment(self) -> list[TopicPartitionKey]:
        return sorted(self._owned())

    def _owned(self) -> set[TopicPartitionKey]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    # -- flow control ----------------------------------------------------------------------------------------

    def pause(self) -> None:
        self._paused = True
        self._consumer.pause(self._consumer.assignment())

    def resume(self) -> None:
        self._paused = False
        self._consumer.resume(self._consumer.assignment())

    def keepalive(self) -> None:
        # consume() is what serves heartbeats, rebalances and max.poll.interval.ms; paused partitions
        # deliver nothing, but anything that slips through is put back so that it cannot be skipped.
        slipped = self.poll(10_000, 0.01)
        if slipped:
            log.debug("keepalive got %d records; rewinding them", len(slipped))
            self.rewind(slipped)

    def rewind(self, records: Sequence[Record]) -> None:
        owned = self._owned()
        for (topic, partition), offset in first_offsets(records).items():
            if (topic, partition) not in owned:
                continue  # revoked: the new owner starts from the committed offset anyway
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                raise TransientError(f"cannot seek {topic}[{partition}] back to {offset}: {describe(exc)}") \
                    from exc

    def lag(self) -> list[PartitionLag]:
        assigned = self._consumer.assignment()
        if not assigned:
            return []
        try:
            positions = self._consumer.position(assigned)
            unknown = [tp for tp in positions if tp.offset < 0]
            committed = {}
            if unknown:
                committed = {(tp.topic, tp.partition): tp.offset
                             for tp in self._consumer.committed(unknown, timeout=self._timeout_s)}
            lags = []
            for tp in positions:
                low, high = self._watermarks(tp)
                position = tp.offset if tp.offset >= 0 else committed.get((tp.topic, tp.partition), -1)
                if position < 0:  # nothing read or committed yet: auto.offset.reset=earliest
                    position = low
                lags.append(PartitionLag(tp.topic, tp.partition, max(0, high - position)))
            return lags
        except KafkaException as exc:
            raise TransientError(f"consumer lag unavailable: {describe(exc)}") from exc

    def _watermarks(self, tp: TopicPartition) -> tuple[int, int]:
        # Fetch responses keep the cached high watermark fresh; a paused partition fetches nothing, so ask.
        if not self._paused:
            cached = self._consumer.get_watermark_offsets(tp, cached=True)
            if cached is not None and cached[1] >= 0 and cached[0] >= 0:
                return cached
        low, high = self._consumer.get_watermark_offsets(tp, timeout=self._timeout_s, cached=False)
        return low, high

    # -- rebalances ------------------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        if self._paused and partitions:
            consumer.pause(partitions)  # an outage pauses the whole member, including what it gains now
        log.info("assigned %s", _names(partitions))

    def on_revoke(self, hook: Callable[[], None]) -> None:
        self._revoke_hook = hook

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._revoke_hook is not None and partitions:
            try:
                self._revoke_hook()  # commits what was handled, so the new owner does not read it again
            except TuneflowError as exc:
                log.warning("could not commit before the rebalance (%s); those records will be read again", exc)
        log.info("revoked %s", _names(partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("lost %s (session timed out); uncommitted records will be read again", _names(partitions))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.close()  # leaves the group now, so the partitions move without a session timeout
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing the consumer: %s", exc)


def _headers(raw: object) -> Headers:
    return {name: value or b"" for name, value in cast(list[tuple[str, bytes | None]], raw)}


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
