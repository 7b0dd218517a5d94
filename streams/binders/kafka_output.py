"""An idempotent confluent-kafka producer, and its transactional variant for exactly-once processors."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streams.binders.base import InputBinding
from streams.binders.batch import wire_value
from streams.binders.kafka_common import describe, error_of, log, partition_counts
from streams.binders.kafka_input import KafkaInput
from streams.errors import ConfigError, ServiceUnavailableError, TransientError, TuneflowError
from streams.records import Headers, Record

T = TypeVar("T")
Outgoing = tuple[str, bytes | None, bytes | None, Headers | None]

QUEUE_FULL_WAIT_S = 60.0
CLOSE_FLUSH_S = 5.0


class ProducerFencedError(TuneflowError):
    """Another instance now owns this transactional id: this one is a zombie and must stop, not retry."""


class KafkaOutput:
    """`flush` raises TransientError for undelivered records and sends exactly those again on the next flush,
    so a caller that simply retries `flush` keeps at-least-once."""

    _resend_failed = True

    def __init__(self, config: dict[str, Any], bootstrap: str, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._failed: list[tuple[str, bytes | None, bytes | None, str]] = []
        self._unconfirmed: list[tuple[str, Sequence[Record]]] = []
        self._resend: list[Outgoing] = []
        # delivery.report.only.error: the callback runs for failures only, not once per record.
        self._producer = Producer({**config, "on_delivery": self._on_delivery,
                                   "delivery.report.only.error": True})
        try:
            partition_counts(self._producer, bootstrap, timeout_s)  # fails fast, naming the broker
        except ServiceUnavailableError:
            self._producer.purge()
            raise

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failed.append((message.topic() or "", message.key(), message.value(), describe(error)))

    def send(self, topic: str, records: Sequence[Record]) -> None:
        produce = self._producer.produce
        if self._resend_failed:  # kept by batch, matched to failed deliveries only if any (see _undelivered)
            self._unconfirmed.append((topic, tuple(records)))
        for record in records:
            value = record.value
            if value.__class__ is not bytes:
                value = wire_value(value)
            key = record.key
            headers: Any = record.headers or None
            try:
                if headers is None:
                    produce(topic, value, key)
                else:
                    produce(topic, value, key, headers=headers)
            except BufferError:
                self._produce_when_room(topic, key, value, headers)
            except KafkaException as exc:
                raise TransientError(f"cannot produce to {topic}: {describe(exc)}") from exc
        self._producer.poll(0)

    def _produce_when_room(self, topic: str, key: bytes | None, value: bytes | None, headers: Any) -> None:
        deadline = time.monotonic() + QUEUE_FULL_WAIT_S
        while True:
            self._producer.poll(0.05)  # the queue drains as deliveries are acknowledged
            try:
                self._producer.produce(topic, value, key, headers=headers)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise TransientError(
                        f"the producer queue stayed full for {QUEUE_FULL_WAIT_S:g}s") from None
            except KafkaException as exc:
                raise TransientError(f"cannot produce to {topic}: {describe(exc)}") from exc

    def flush(self, timeout_s: float = 30.0) -> None:
        if self._resend:
            resend, self._resend = self._resend, []
            for topic, key, value, headers in resend:
                self.send(topic, [Record(key, value, headers or {})])
        remaining = self._producer.flush(timeout_s)
        if self._failed:
            failed, self._failed = self._failed, []
            if self._resend_failed:
                self._resend = self._undelivered(failed)
                if not remaining:
                    self._unconfirmed = []
            raise TransientError(f"{len(failed)} records were not delivered (first: {failed[0][3]})"
                                 + ("; the next flush sends them again" if self._resend_failed else ""))
        if remaining:
            raise TransientError(f"{remaining} records still unacknowledged after {timeout_s:g}s")
        self._unconfirmed = []

    def _undelivered(self, failed: list[tuple[str, bytes | None, bytes | None, str]]) -> list[Outgoing]:
        """The sent records (with headers, which delivery reports lack) that match the failed deliveries."""
        wanted = Counter((topic, key, value) for topic, key, value, _ in failed)
        matched = []
        for topic, records in self._unconfirmed:
            for record in records:
                value = record.value if record.value.__class__ is bytes else wire_value(record.value)
                identity = (topic, record.key, value)
                if wanted[identity] > 0:
                    wanted[identity] -= 1
                    matched.append((topic, record.key, value, record.headers or None))
        return matched

    def close(self) -> None:
        # Unflushed records were never acknowledged to anyone, so dropping them loses nothing committed.
        if self._producer.flush(CLOSE_FLUSH_S):
            log.warning("closing the producer with records undelivered; they were never committed")
            self._producer.purge()
            self._producer.flush(0)


class KafkaTransactionalOutput(KafkaOutput):
    """Outputs and input offsets commit in one Kafka transaction: read_committed readers see all or none."""

    _resend_failed = False  # a failed transaction is aborted and redone whole by the caller

    def __init__(self, config: dict[str, Any], bootstrap: str, timeout_s: float) -> None:
        super().__init__(config, bootstrap, timeout_s)
        self.transactional_id = str(config["transactional.id"])
        self._open = False
        try:
            self._producer.init_transactions(timeout_s)
        except KafkaException as exc:
            error = error_of(exc)
            if error.fatal():
                raise ProducerFencedError(
                    f"init_transactions({self.transactional_id}): {describe(error)}") from exc
            raise ServiceUnavailableError(
                f"Kafka at {bootstrap} could not start transactions for {self.transactional_id!r} within "
                f"{timeout_s:g}s ({describe(error)}); the transaction coordinator needs the "
                "__transaction_state topic (replication factor <= brokers)") from exc

    def begin(self) -> None:
        if self._open:
            raise RuntimeError(f"transaction {self.transactional_id!r} is already open")
        self._call("begin", self._producer.begin_transaction)
        self._open = True

    def send(self, topic: str, records: Sequence[Record]) -> None:
        if not self._open:
            raise RuntimeError(f"begin() a transaction before sending on {self.transactional_id!r}")
        super().send(topic, records)

    def commit_with_offsets(self, source: InputBinding, records: Sequence[Record]) -> None:
        if not isinstance(source, KafkaInput):
            raise ConfigError("commit_with_offsets needs an input of the Kafka binder")
        if not self._open:
            raise RuntimeError(f"no open transaction on {self.transactional_id!r}")
        offsets = source.offsets_to_commit(records)
        if offsets:
            metadata = source.group_metadata()
            self._call("send offsets", lambda: self._producer.send_offsets_to_transaction(
                offsets, metadata, self._timeout_s))
        self._call("commit", lambda: self._producer.commit_transaction(self._timeout_s))
        self._open = False
        self._failed = []

    def abort(self) -> None:
        if not self._open:
            return  # already aborted (a failed commit aborts by itself)
        try:
            self._retry_retriable(lambda: self._producer.abort_transaction(self._timeout_s))
        except KafkaException as exc:
            error = error_of(exc)
            if error.fatal():
                self._open = False
                raise ProducerFencedError(f"abort of {self.transactional_id!r}: {describe(error)}") from exc
            raise TransientError(f"abort of {self.transactional_id!r} failed: {describe(error)}") from exc
        self._open = False
        self._failed = []

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """Retriable errors are retried in place; anything else aborts; the caller redoes the batch."""
        try:
            return self._retry_retriable(call)
        except KafkaException as exc:
            error = error_of(exc)
            if error.fatal():
                self._open = False
                raise ProducerFencedError(
                    f"transaction {self.transactional_id!r} fenced during {what}: {describe(error)}") from exc
            self.abort()
            raise TransientError(f"transaction {what} failed and was aborted: {describe(error)}") from exc

    def _retry_retriable(self, call: Callable[[], T]) -> T:
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                return call()
            except KafkaException as exc:
                error = error_of(exc)
                if error.fatal() or error.txn_requires_abort() or not error.retriable() \
                        or time.monotonic() > deadline:
                    raise
                log.info("transaction %s: retrying after %s", self.transactional_id, describe(error))
                time.sleep(0.1)

    def close(self) -> None:
        if self._open:
            try:
                self.abort()
            except TuneflowError as exc:
                log.warning("closing with an open transaction: %s", exc)
        super().close()
