"""A small durable state kept in a Kafka topic of its own through the binder: the last value written under one key
wins (a CDC source's log position, a snapshot's progress). Read back by reading the topic to its end."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streams.binders.base import Binder, InputBinding, OutputBinding
from streams.binders.kafka import KafkaBinder
from streams.binders.kafka_common import base_config, describe, error_of
from streams.errors import TransientError
from streams.records import Record
from streams.serde import dumps, loads

# Only the last value counts: Kafka keeps one per key once a segment rolls (hourly), so a start reads at most an
# hour of values, however long the source has run.
COMPACTED = {"cleanup.policy": "compact", "segment.ms": str(3_600_000), "min.cleanable.dirty.ratio": "0.1"}


class TopicState:
    """`what` names the state in errors ("the log position"); `compacted` creates the topic compacted on Kafka."""

    def __init__(self, binder: Binder, topic: str, key: bytes, what: str, compacted: bool = False) -> None:
        self.binder = binder
        self.topic = topic
        self.key = key
        self.what = what
        self.compacted = compacted
        self._output: OutputBinding | None = None

    def load(self, timeout_s: float = 60.0) -> dict[str, Any] | None:
        """The last value written, or None when none ever was."""
        if self.compacted and isinstance(self.binder, KafkaBinder):
            create_compacted(self.binder, self.topic)
        self.binder.ensure_topics([self.topic])
        reader: InputBinding = self.binder.input([self.topic], f"{self.topic}.reader", self.key.decode())
        last: dict[str, Any] | None = None
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                records = reader.poll(1000, 0.5)
                for record in records:
                    if record.key == self.key:
                        last = loads(record.value)
                lags = reader.lag()
                if not records and lags and all(item.lag == 0 for item in lags):
                    return last
        finally:
            reader.close()
        raise TransientError(f"could not read {self.what} in {self.topic} within {timeout_s:g}s")

    def save(self, value: dict[str, Any], flush: bool = False) -> None:
        """Write a value; `flush` waits until Kafka has it (else it goes with the producer's next delivery)."""
        if self._output is None:
            self._output = self.binder.output()
        self._output.send(self.topic, [Record(key=self.key, value=dumps(value))])
        if flush:
            self._output.flush()

    def flush(self) -> None:
        """Wait until every value written is in Kafka."""
        if self._output is not None:
            self._output.flush()

    def close(self) -> None:
        if self._output is not None:
            self._output.flush()
            self._output.close()
            self._output = None


def create_compacted(binder: KafkaBinder, topic: str) -> None:
    """Create `topic` compacted unless it exists (one partition: the values keep their order)."""
    admin = AdminClient(base_config(binder.bootstrap))
    futures = admin.create_topics([NewTopic(topic, 1, binder.replication, config=COMPACTED)],
                                  operation_timeout=binder.timeout_s, request_timeout=binder.timeout_s)
    try:
        futures[topic].result(binder.timeout_s + 5)
    except KafkaException as exc:
        if error_of(exc).code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise TransientError(f"cannot create {topic!r}: {describe(exc)}") from None
