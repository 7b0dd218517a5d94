"""How a switch state reaches the apps and how their acks come back: the compacted control topic and acks topic on
Kafka, or the state database itself for runs without Kafka (the embedded `tuneflow run`, the demo)."""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streams.binders.kafka import KafkaBinder
from streams.binders.kafka_common import base_config, describe, error_of
from streams.cdc.topic_state import create_compacted
from streams.errors import ServiceUnavailableError, TransientError
from streams.migration.phases import InstanceAck, SwitchState
from streams.migration.switch_store import SwitchStore

CONTROL_TOPIC = "tuneflow.switch"  # key: migration name; value: the SwitchState (+ "at", when it was published)
ACKS_TOPIC = "tuneflow.switch.acks"  # key: migration/stream/app/instance; value: InstanceAck; tombstone on exit
HEARTBEAT_S = 5.0  # an instance repeats its ack this often...
SILENT_AFTER_S = 15.0  # ...and one not heard of for this long is taken as gone (crashed, or stopped uncleanly)


class SwitchBus(Protocol):
    def publish(self, state: SwitchState) -> None:
        """Make `state` visible to every watching app instance (returns once it is durable)."""
        ...

    def acks(self, migration: str) -> list[InstanceAck]:
        """The last ack of every instance known to watch `migration`, silent ones included."""
        ...

    def close(self) -> None: ...


def ack_key(migration: str, stream: str, app: str, instance: str) -> bytes:
    return f"{migration}/{stream}/{app}/{instance}".encode()


def alive(acks: list[InstanceAck], now: float | None = None) -> list[InstanceAck]:
    moment = time.time() if now is None else now
    return [ack for ack in acks if moment - ack.at <= SILENT_AFTER_S]


def ensure_switch_topics(binder: KafkaBinder) -> None:
    """Create the control and acks topics compacted unless they exist (ServiceUnavailableError: no broker)."""
    for topic in (CONTROL_TOPIC, ACKS_TOPIC):
        if binder.partitions(topic) == 0:
            create_compacted(binder, topic)


def producer(binder: KafkaBinder) -> Producer:
    # linger 0: a switch state or an ack is one small record that should leave at once.
    return Producer({**base_config(binder.bootstrap), "enable.idempotence": True, "acks": "all", "linger.ms": 0})


def flush(producer: Producer, what: str, timeout_s: float) -> None:
    if producer.flush(timeout_s) > 0:
        raise ServiceUnavailableError(f"Kafka did not take {what} within {timeout_s:g}s")


class CompactedTail:
    """Reads a one-partition compacted topic from its beginning, then whatever arrives, without a consumer group."""

    def __init__(self, binder: KafkaBinder, topic: str) -> None:
        self.topic = topic
        self._timeout_s = binder.timeout_s
        # fetch.wait.max.ms bounds how long an idle fetch waits on the broker: the latency of a quiet topic's next
        # record is then at most this much plus the network.
        self._consumer = Consumer({**base_config(binder.bootstrap), "group.id": "tuneflow-switch-tail",
                                   "enable.auto.commit": False, "enable.auto.offset.store": False,
                                   "fetch.wait.max.ms": 50})
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])

    def poll(self, timeout_s: float) -> list[tuple[bytes, dict[str, Any] | None]]:
        """(key, value or None for a tombstone) of what arrived, waiting at most `timeout_s` for the first."""
        try:
            # consume() would wait out its whole timeout for a full batch: wait for one record, then take the rest.
            first = self._consumer.poll(timeout_s)
            messages = [] if first is None else [first, *self._consumer.consume(1000, 0)]
        except KafkaException as exc:
            raise TransientError(f"cannot read {self.topic}: {describe(error_of(exc))}") from exc
        return [entry for entry in map(_entry, messages) if entry is not None]

    def to_end(self) -> list[tuple[bytes, dict[str, Any] | None]]:
        """Everything up to the topic's end as it is now."""
        try:
            _, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=self._timeout_s)
        except KafkaException as exc:
            raise TransientError(f"cannot read the end of {self.topic}: {describe(error_of(exc))}") from exc
        found: list[tuple[bytes, dict[str, Any] | None]] = []
        deadline = time.monotonic() + self._timeout_s
        while self._position() < high:
            if time.monotonic() > deadline:
                raise TransientError(f"could not read {self.topic} to its end within {self._timeout_s:g}s")
            found.extend(self.poll(0.1))
        return found

    def _position(self) -> int:
        offset = self._consumer.position([TopicPartition(self.topic, 0)])[0].offset
        return offset if offset >= 0 else 0

    def close(self) -> None:
        self._consumer.close()


def _entry(message: Message) -> tuple[bytes, dict[str, Any] | None] | None:
    error = message.error()
    if error is not None:
        if error.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
            return None
        raise TransientError(f"cannot read {message.topic()}: {describe(error)}")
    key, value = message.key(), message.value()
    if key is None:
        return None
    return key, (None if value is None else orjson.loads(value))


class KafkaSwitchBus:
    """Publishes on the compacted control topic; reads the acks topic, keeping its position between calls."""

    def __init__(self, binder: KafkaBinder) -> None:
        self._binder = binder
        ensure_switch_topics(binder)
        self._producer = producer(binder)
        self._acks_tail = CompactedTail(binder, ACKS_TOPIC)
        self._acks: dict[bytes, InstanceAck] = {}

    def publish(self, state: SwitchState) -> None:
        value = orjson.dumps({**state.to_json(), "at": time.time()})
        self._producer.produce(CONTROL_TOPIC, key=state.migration.encode(), value=value)
        flush(self._producer, f"the switch state of {state.migration}", self._binder.timeout_s)

    def acks(self, migration: str) -> list[InstanceAck]:
        for key, value in self._acks_tail.to_end():
            if value is None:
                self._acks.pop(key, None)
            else:
                self._acks[key] = InstanceAck.from_json(value)
        return [ack for ack in self._acks.values() if ack.migration == migration]

    def close(self) -> None:
        self._acks_tail.close()
        self._producer.flush(self._binder.timeout_s)


class StateSwitchBus:
    """The state database carries the switch: the state-polling views read it and write their acks into it."""

    def __init__(self, store: SwitchStore) -> None:
        self._store = store

    def publish(self, state: SwitchState) -> None:
        """Nothing to send: the state is already stored, and the views poll it."""

    def acks(self, migration: str) -> list[InstanceAck]:
        return self._store.acks(migration)

    def close(self) -> None:
        pass
