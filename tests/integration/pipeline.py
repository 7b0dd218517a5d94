"""A three-process stream `kafka | normalize | mongo` over real Kafka and FerretDB, and what to check after it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pymongo import MongoClient

from streams.records import ERROR_REASONS_HEADER
from streams.serde import business_fields, content_checksum
from tests.integration.processes import AppProcess, wait_for
from tests.integration.services import unique_name


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, replication_factor=1)]).values():
        future.result(30)


def produce(bootstrap: str, topic: str, items: Sequence[tuple[bytes, bytes, dict[str, bytes] | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
                         "partitioner": "murmur2_random"})
    for key, value, headers in items:
        producer.produce(topic, value, key, headers=headers)
        producer.poll(0)
    assert producer.flush(30) == 0


def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    """Every committed record now in `topic` (all partitions)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("tf_check"),
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    if metadata.error is not None:
        consumer.close()
        return []
    parts = [TopicPartition(topic, p, 0) for p in metadata.partitions]
    ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts}
    consumer.assign(parts)
    out: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []
    positions = {p: 0 for p in ends}
    while any(positions[p] < ends[p] for p in ends):
        for message in consumer.consume(1000, timeout=2):
            if message.error():
                continue
            positions[message.partition()] = message.offset() + 1
            out.append((message.key(), message.value(), dict(message.headers() or [])))
    consumer.close()
    return out


@dataclass
class Pipeline:
    bootstrap: str
    mongo_uri: str
    workdir: Path
    partitions: int = 3
    stream: str = field(default_factory=lambda: unique_name("tfs"))
    database: str = field(default_factory=lambda: unique_name("tf_pipe"))

    def __post_init__(self) -> None:
        self.raw_topic = f"{self.stream}_raw"
        create_topic(self.bootstrap, self.raw_topic, self.partitions)
        for topic in (f"{self.stream}.src", f"{self.stream}.normalize"):
            create_topic(self.bootstrap, topic, self.partitions)
        self.client: MongoClient[dict[str, Any]] = MongoClient(self.mongo_uri, serverSelectionTimeoutMS=10_000)

    @property
    def collection(self) -> Any:
        return self.client[self.database]["tracks"]

    def source(self, group: str | None = None) -> AppProcess:
        options = [f"--topic={self.raw_topic}"] + ([f"--group={group}"] if group else [])
        return AppProcess(["kafka", "--stream", self.stream, "--label", "src", "--", *options],
                          self.workdir, f"src-{group or 'main'}")

    def normalize(self, *extra: str) -> AppProcess:
        return AppProcess(["normalize", "--stream", self.stream, "--input", f"{self.stream}.src", *extra],
                          self.workdir, "normalize")

    def sink(self) -> AppProcess:
        return AppProcess(["mongo", "--stream", self.stream, "--input", f"{self.stream}.normalize", "--",
                           f"--uri={self.mongo_uri}", f"--database={self.database}"], self.workdir, "mongo")

    def visible_count(self) -> int:
        return int(self.collection.count_documents({"_deleted": {"$ne": True}}))

    def store_documents(self) -> dict[int, dict[str, Any]]:
        return {doc["_id"]: business_fields(doc) for doc in self.collection.find({"_deleted": {"$ne": True}})}

    def dead_letters(self) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
        return self.dead_letters_of("normalize")

    def dead_letters_of(self, label: str) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
        return read_topic(self.bootstrap, f"{self.stream}.{label}.dlq")

    def wait_until_stored(self, expected: int, timeout_s: float, *processes: AppProcess) -> None:
        wait_for(lambda: self.visible_count() >= expected, timeout_s, f"{expected} documents in the store",
                 *processes)

    def close(self) -> None:
        self.client.drop_database(self.database)
        self.client.close()


@contextmanager
def running(*processes: AppProcess) -> Iterator[tuple[AppProcess, ...]]:
    started = [p.start() for p in processes]
    try:
        yield tuple(started)
    finally:
        for process in started:
            process.stop()


def assert_store_matches(pipeline: Pipeline, expected: dict[int, dict[str, Any]]) -> None:
    stored = pipeline.store_documents()
    assert len(stored) == len(expected)
    assert content_checksum(stored.values()) == content_checksum(expected.values())


def dead_letter_reasons(letters: Sequence[tuple[bytes | None, bytes, dict[str, bytes]]]) -> dict[bytes, list[Any]]:
    return {key or b"": orjson.loads(headers[ERROR_REASONS_HEADER]) for key, _, headers in letters}
