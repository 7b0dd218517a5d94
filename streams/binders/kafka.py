"""The Kafka binder (confluent-kafka): topics, consumer groups, idempotent and transactional producers.

Clients are created on first use in the process that uses them: librdkafka handles do not survive a fork.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewPartitions, NewTopic

from streams.binders.kafka_common import base_config, describe, error_of, partition_counts
from streams.binders.kafka_input import KafkaInput
from streams.binders.kafka_output import KafkaOutput, KafkaTransactionalOutput
from streams.errors import ConfigError, ServiceUnavailableError, TransientError

REPLICATION_ENV = "TUNEFLOW_KAFKA_REPLICATION"

CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,  # offsets move only through commit(), after outputs are durable
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "isolation.level": "read_committed",
    # Incremental rebalances: scaling a group moves only the partitions that change owner, so the other
    # members keep consuming and their in-hand batches still commit (eager strategies revoke everything).
    "partition.assignment.strategy": "cooperative-sticky",
}

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 10,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    # Java's default partitioner for keyed records: a key lands on the same partition from any client.
    "partitioner": "murmur2_random",
    "queue.buffering.max.messages": 500_000,
}


class KafkaBinder:
    name = "kafka"

    def __init__(self, bootstrap: str, client_config: dict[str, Any] | None = None, *,
                 consumer_config: dict[str, Any] | None = None, producer_config: dict[str, Any] | None = None,
                 replication: int | None = None, timeout_s: float = 10.0) -> None:
        """`client_config` applies to every client; `consumer_config`/`producer_config` to one kind only."""
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self.replication = replication if replication is not None else _replication_from_env()
        self._client_config = dict(client_config or {})
        self._consumer_config = dict(consumer_config or {})
        self._producer_config = dict(producer_config or {})
        self._admin: AdminClient | None = None
        self._admin_pid = 0
        self._readers: dict[str, Consumer] = {}
        self._readers_pid = 0

    # -- clients ---------------------------------------------------------------------------------------------

    def input(self, topics: Sequence[str], group: str, instance: str) -> KafkaInput:
        config = {**base_config(self.bootstrap), **CONSUMER_DEFAULTS, "group.id": group,
                  "client.id": f"tuneflow-{group}-{instance}", **self._client_config, **self._consumer_config}
        return KafkaInput(config, topics, self.bootstrap, self.timeout_s)

    def output(self, transactional_id: str | None = None) -> KafkaOutput:
        config = {**base_config(self.bootstrap), **PRODUCER_DEFAULTS,
                  "client.id": f"tuneflow-{transactional_id or 'producer'}-{os.getpid()}",
                  **self._client_config, **self._producer_config}
        if transactional_id is None:
            return KafkaOutput(config, self.bootstrap, self.timeout_s)
        config["transactional.id"] = transactional_id
        return KafkaTransactionalOutput(config, self.bootstrap, self.timeout_s)

    def _admin_client(self) -> AdminClient:
        if self._admin is None or self._admin_pid != os.getpid():  # never reuse a handle across a fork
            self._admin = AdminClient({**base_config(self.bootstrap), **self._client_config})
            self._admin_pid = os.getpid()
        return self._admin

    # -- topics ----------------------------------------------------------------------------------------------

    def ensure_topics(self, topics: Sequence[str], partitions: int = 1) -> None:
        if partitions < 1:
            raise ConfigError(f"a topic needs at least 1 partition, not {partitions}")
        wanted = list(dict.fromkeys(topics))
        if not wanted:
            return
        admin = self._admin_client()
        existing = partition_counts(admin, self.bootstrap, self.timeout_s)
        missing = [t for t in wanted if t not in existing]
        if missing:
            futures = admin.create_topics([NewTopic(t, num_partitions=partitions,
                                                    replication_factor=self.replication) for t in missing],
                                          operation_timeout=self.timeout_s, request_timeout=self.timeout_s)
            self._settle(futures, KafkaError.TOPIC_ALREADY_EXISTS, "create topic")
        to_grow = [t for t in wanted if 0 < existing.get(t, 0) < partitions]  # grow, never shrink
        if to_grow:
            futures = admin.create_partitions([NewPartitions(t, partitions) for t in to_grow],
                                              operation_timeout=self.timeout_s,
                                              request_timeout=self.timeout_s)
            # INVALID_PARTITIONS: someone else grew it meanwhile; the wait below checks the count.
            self._settle(futures, KafkaError.INVALID_PARTITIONS, "add partitions to")
        if missing or to_grow:
            self._wait_for(wanted, partitions)

    def _settle(self, futures: dict[str, Any], tolerated: int, action: str) -> None:
        for topic, future in futures.items():
            try:
                future.result(self.timeout_s + 5)
            except KafkaException as exc:
                error = error_of(exc)
                if error.code() == tolerated:
                    continue
                if error.code() in (KafkaError.INVALID_REPLICATION_FACTOR, KafkaError.POLICY_VIOLATION,
                                    KafkaError.INVALID_CONFIG, KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                    KafkaError.CLUSTER_AUTHORIZATION_FAILED):
                    raise ConfigError(f"cannot {action} {topic!r} on {self.bootstrap}: {describe(error)} "
                                      f"(replication factor {self.replication}, set by {REPLICATION_ENV})") \
                        from exc
                raise TransientError(f"cannot {action} {topic!r}: {describe(error)}") from exc
            except TimeoutError as exc:
                raise ServiceUnavailableError(
                    f"Kafka at {self.bootstrap} did not {action} {topic!r} in time") from exc

    def _wait_for(self, topics: list[str], partitions: int) -> None:
        """Until the metadata shows each topic with its partitions led, so the first produce cannot fail."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            counts = partition_counts(self._admin_client(), self.bootstrap, self.timeout_s, led_only=True)
            late = [t for t in topics if counts.get(t, 0) < partitions]
            if not late:
                return
            if time.monotonic() > deadline:
                raise TransientError(f"topics {late} not ready on {self.bootstrap} after {self.timeout_s:g}s")
            time.sleep(0.1)

    def partitions(self, topic: str) -> int:
        return partition_counts(self._admin_client(), self.bootstrap, self.timeout_s).get(topic, 0)

    def group_lag(self, group: str, topics: Sequence[str]) -> int:
        counts = partition_counts(self._admin_client(), self.bootstrap, self.timeout_s)
        partitions = [TopicPartition(t, p) for t in topics for p in range(counts.get(t, 0))]
        if not partitions:
            return 0
        consumer = self._offsets_reader(group)
        try:
            lag = 0
            for tp in consumer.committed(partitions, timeout=self.timeout_s):
                low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                           timeout=self.timeout_s)
                lag += high - (tp.offset if tp.offset >= 0 else low)
            return lag
        except KafkaException as exc:
            raise TransientError(f"cannot read the offsets of group {group!r}: {describe(error_of(exc))}") from exc

    def _offsets_reader(self, group: str) -> Consumer:
        """A consumer that never joins `group` and only reads its offsets, kept for repeated checks."""
        if self._readers_pid != os.getpid():  # never reuse a handle across a fork
            self._readers, self._readers_pid = {}, os.getpid()
        if group not in self._readers:
            self._readers[group] = Consumer({**base_config(self.bootstrap), "group.id": group,
                                             "enable.auto.commit": False, **self._client_config})
        return self._readers[group]

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers = {}
        self._admin = None  # AdminClient has no close; dropping the handle destroys it


def _replication_from_env() -> int:
    raw = os.environ.get(REPLICATION_ENV, "1")
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{REPLICATION_ENV} must be a whole number, not {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{REPLICATION_ENV} must be at least 1, not {value}")
    return value
