"""Kafka binder throughput next to raw confluent-kafka in the same run: the binder's cost as a ratio."""

from __future__ import annotations

import os
import sys
import uuid
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks.ceilings import PRODUCER_CONFIG
from benchmarks.harness import measure
from benchmarks.records import encoded_size, track_documents
from streams.binders.kafka import KafkaBinder
from streams.records import Record

RECORDS = int(os.environ.get("TUNEFLOW_BENCH_KAFKA_RECORDS", "200000"))
BATCH = 500  # the runner's default batch size
FETCH = {"fetch.min.bytes": 1_000_000, "fetch.wait.max.ms": 50}  # what the raw ceiling consumes with


def run(bootstrap: str, count: int = RECORDS) -> list[dict[str, Any]]:
    documents = track_documents(count)
    payloads = [orjson.dumps(d) for d in documents]
    keys = [str(d["_id"]).encode() for d in documents]
    records = [Record(key, value) for key, value in zip(keys, payloads, strict=True)]
    batches = [records[i : i + BATCH] for i in range(0, count, BATCH)]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    binder = KafkaBinder(bootstrap)
    topics: list[str] = []

    def new_topic() -> None:
        topics.append(f"tf_bench_{uuid.uuid4().hex[:8]}")
        for future in admin.create_topics([NewTopic(topics[-1], 1, 1)]).values():
            future.result(30)

    def raw_produce() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG})
        for key, value in zip(keys, payloads, strict=True):
            while True:
                try:
                    producer.produce(topics[-1], value, key)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        assert producer.flush(60) == 0

    def binder_send(flush_each_batch: bool) -> None:
        output = binder.output()
        for batch in batches:
            output.send(topics[-1], batch)
            if flush_each_batch:
                output.flush(60)
        output.flush(60)
        output.close()

    def raw_consume() -> None:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"tf_bench_{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, **FETCH})
        consumer.assign([TopicPartition(topics[0], 0, 0)])
        seen = 0
        while seen < count:
            seen += len(consumer.consume(num_messages=10_000, timeout=5))
        consumer.close()

    def binder_poll(commit: bool) -> None:
        # The group join happens before the clock starts (see `joined`); this times reading and committing.
        consumer = pending.pop()
        seen = 0
        while seen < count:
            batch = consumer.poll(BATCH if commit else 10_000, 5)
            if commit:
                consumer.commit(batch)
            seen += len(batch)
        consumer.close()

    pending: list[Any] = []

    def joined(config: dict[str, Any]) -> None:
        kafka = KafkaBinder(bootstrap, consumer_config=config)
        consumer = kafka.input([topics[0]], f"tf_bench_{uuid.uuid4().hex[:8]}", "bench-0")
        while not (first := consumer.poll(1, 1)):
            pass
        consumer.rewind(first)  # the seek also drops what was prefetched while joining
        pending.append(consumer)

    size = round(encoded_size(documents))
    results = [
        measure("raw produce (idempotent, lz4)", count, raw_produce, setup=new_topic, bytes_per_record=size),
        measure("binder send + one flush", count, lambda: binder_send(False), setup=new_topic),
        measure(f"binder send + flush every {BATCH}", count, lambda: binder_send(True), setup=new_topic),
        measure("raw consume (batch 10k, fetch.min.bytes 1MB)", count, raw_consume),
        measure("binder poll 10k (default fetch)", count, lambda: binder_poll(False),
                setup=lambda: joined({})),
        measure("binder poll 10k (fetch.min.bytes 1MB)", count, lambda: binder_poll(False),
                setup=lambda: joined(FETCH)),
        measure(f"binder poll {BATCH} + commit each batch", count, lambda: binder_poll(True),
                setup=lambda: joined({})),
    ]
    for future in admin.delete_topics(topics).values():
        future.result(30)
    return results


if __name__ == "__main__":
    bootstrap = os.environ.get("TUNEFLOW_KAFKA_BOOTSTRAP")
    if not bootstrap:
        sys.exit("set TUNEFLOW_KAFKA_BOOTSTRAP (e.g. `eval \"$(deploy/local/stack env)\"`)")
    print(orjson.dumps(run(bootstrap), option=orjson.OPT_INDENT_2).decode())
