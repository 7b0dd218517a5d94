"""The Kafka binder on a real broker: the contract the memory binder passes, plus what only Kafka has."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.binders.base import Binder, TransactionalOutput
from streams.binders.kafka import KafkaBinder
from streams.errors import ServiceUnavailableError, TransientError
from streams.records import Record
from tests.binder_contract import CHECKS, Names, keyed, produce, read
from tests.integration.services import service_url, unique_name

pytestmark = pytest.mark.integration

# Small session/heartbeat times so that groups in these tests settle and rebalance in about a second.
FAST_GROUPS = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 300}


@pytest.fixture
def bootstrap() -> str:
    return service_url("kafka")


@pytest.fixture
def binder(bootstrap: str) -> Iterator[KafkaBinder]:
    kafka = KafkaBinder(bootstrap, consumer_config=FAST_GROUPS)
    yield kafka
    kafka.close()


@pytest.fixture
def name(bootstrap: str) -> Iterator[Names]:
    made: list[str] = []

    def make(prefix: str) -> str:
        made.append(unique_name(f"tf_{prefix}"))
        return made[-1]

    yield make
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [topic for topic in made if topic in existing]
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=10).values():
            future.result(15)


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
def test_contract(check: Callable[[Binder, Names], None], binder: KafkaBinder, name: Names) -> None:
    check(binder, name)


def test_ensure_topics_creates_some_and_grows_others_in_one_call(binder: KafkaBinder, name: Names) -> None:
    old, new = name("old"), name("new")
    binder.ensure_topics([old], 1)
    binder.ensure_topics([old, new, old], 3)
    assert (binder.partitions(old), binder.partitions(new)) == (3, 3)


def _committed(bootstrap: str, group: str, topic: str) -> int:
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return reader.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        reader.close()


def test_exactly_once_commits_the_group_offsets_with_the_outputs(binder: KafkaBinder, name: Names,
                                                                  bootstrap: str) -> None:
    source, sink, group = name("eos_in"), name("eos_out"), name("group")
    binder.ensure_topics([source, sink], 1)
    produce(binder, source, keyed(5))
    processor = binder.input([source], group, "eos-0")
    txn = binder.output(transactional_id=name("txn"))
    assert isinstance(txn, TransactionalOutput)
    try:
        batch = read(processor, 5)
        txn.begin()
        txn.send(sink, batch[:3])
        txn.commit_with_offsets(processor, batch[:3])
        assert _committed(bootstrap, group, source) == 3

        txn.begin()
        txn.send(sink, batch[3:])
        txn.flush()  # durable in the log, yet invisible to read_committed until the commit
        txn.abort()
        assert _committed(bootstrap, group, source) == 3, "an aborted transaction moves no offset"
        txn.abort()  # aborting twice is harmless: callers abort after a failed commit, which aborted already
    finally:
        txn.close()
        processor.close()
    reader = binder.input([sink], name("reader"), "reader-0")
    try:
        assert [r.key for r in read(reader, 3)] == [r.key for r in batch[:3]]
        assert reader.poll(100, 1.0) == []
    finally:
        reader.close()


def test_undelivered_records_fail_every_flush_until_they_are_delivered(binder: KafkaBinder, name: Names,
                                                                        bootstrap: str) -> None:
    topic = name("small")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1, config={"max.message.bytes": "2000"})]).values():
        future.result(15)
    output = binder.output()
    try:
        output.send(topic, [Record(b"big", os.urandom(8000))])  # random: lz4 cannot shrink it under the limit
        with pytest.raises(TransientError, match="not delivered"):
            output.flush(15)
        # A caller that retries the flush must not be told "durable" for a record the broker refused.
        with pytest.raises(TransientError, match="not delivered"):
            output.flush(15)
    finally:
        output.close()


@pytest.mark.parametrize("operation", ["ensure_topics", "partitions", "input", "output"])
def test_an_unreachable_broker_is_named_quickly(operation: str) -> None:
    kafka = KafkaBinder("127.0.0.1:1", timeout_s=1.0)
    calls: dict[str, Callable[[], object]] = {
        "ensure_topics": lambda: kafka.ensure_topics(["t"]),
        "partitions": lambda: kafka.partitions("t"),
        "input": lambda: kafka.input(["t"], "g", "i-0"),
        "output": lambda: kafka.output(),
    }
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match=r"127\.0\.0\.1:1"):
        calls[operation]()
    assert time.monotonic() - started < 10
