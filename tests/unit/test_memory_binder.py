"""The memory binder honours the binder contract (the same checks run on Kafka) and its in-process extras."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import pytest

from streams.binders.base import Binder, PartitionLag
from streams.binders.factory import create_binder
from streams.binders.memory import MemoryBinder
from streams.binders.partitioner import partition_for
from streams.errors import ConfigError, ServiceUnavailableError
from streams.records import Record
from tests.binder_contract import CHECKS, Names, keyed, produce, read


@pytest.fixture
def binder() -> MemoryBinder:
    return MemoryBinder()


@pytest.fixture
def name() -> Names:
    counter = itertools.count()
    return lambda prefix: f"{prefix}_{next(counter)}"


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
def test_contract(check: Callable[[Binder, Names], None], binder: MemoryBinder, name: Names) -> None:
    check(binder, name)


def test_keys_match_the_java_partitioner_vectors(binder: MemoryBinder) -> None:
    # Partitions kafka-python's tests took from Kafka's Java client for a 1000-partition topic.
    binder.ensure_topics(["wide"], 1000)
    keys = [b"", b"a", b"ab", b"abc", b"123456789", b"\x00 "]
    produce(binder, "wide", [Record(key, b"v") for key in keys])
    consumer = binder.input(["wide"], "g", "wide-0")
    placed = {r.key: r.partition for r in read(consumer, len(keys))}
    assert [placed[key] for key in keys] == [681, 524, 434, 107, 566, 742]


def test_records_without_key_spread_round_robin(binder: MemoryBinder) -> None:
    binder.ensure_topics(["rr"], 3)
    produce(binder, "rr", [Record(None, b"v")] * 6)
    assert [binder.end_offset("rr", p) for p in range(3)] == [2, 2, 2]


def test_poll_wakes_up_when_another_thread_sends(binder: MemoryBinder) -> None:
    binder.ensure_topics(["live"], 1)
    consumer = binder.input(["live"], "g", "live-0")
    sender = threading.Timer(0.1, produce, args=(binder, "live", keyed(1)))
    sender.start()
    started = time.monotonic()
    got = consumer.poll(10, 5.0)
    sender.join()
    assert len(got) == 1
    assert time.monotonic() - started < 2.0


def test_a_joining_member_takes_over_partitions_from_the_committed_offset(binder: MemoryBinder) -> None:
    binder.ensure_topics(["scale"], 2)
    records = keyed(20)
    produce(binder, "scale", records)
    first = binder.input(["scale"], "g", "scale-0")
    got = read(first, 20)
    first.commit([r for r in got if r.partition == 0])
    second = binder.input(["scale"], "g", "scale-1")  # a rebalance: partition 1 moves to the newcomer
    assert first.assignment() == [("scale", 0)]
    redelivered = read(second, len([r for r in got if r.partition == 1]))
    assert {r.offset for r in redelivered} == {r.offset for r in got if r.partition == 1}
    first.commit(got)  # partition 1 is no longer first's: its offsets must not move
    assert binder.committed("g", "scale", 1) is None
    assert binder.committed("g", "scale", 0) == len([r for r in got if r.partition == 0])


def test_transactional_sends_stay_invisible_until_commit(binder: MemoryBinder) -> None:
    binder.ensure_topics(["in", "out"], 1)
    produce(binder, "in", keyed(2))
    consumer = binder.input(["in"], "g", "eos-0")
    batch = read(consumer, 2)
    txn = binder.output(transactional_id="t")
    txn.begin()
    txn.send("out", batch)
    assert binder.end_offset("out", 0) == 0
    assert binder.committed("g", "in", 0) is None
    txn.commit_with_offsets(consumer, batch)
    assert binder.end_offset("out", 0) == 2
    assert binder.committed("g", "in", 0) == 2


def test_transactional_output_needs_begin(binder: MemoryBinder) -> None:
    txn = binder.output(transactional_id="t")
    with pytest.raises(RuntimeError, match="begin"):
        txn.send("out", keyed(1))


def test_lag_of_an_unread_partition_is_everything(binder: MemoryBinder) -> None:
    binder.ensure_topics(["lagging"], 2)
    produce(binder, "lagging", [Record(b"a", b"1"), Record(b"a", b"2")])
    consumer = binder.input(["lagging"], "g", "lag-0")
    partition = partition_for(b"a", 2)
    assert sorted(consumer.lag(), key=lambda item: item.partition) == sorted(
        [PartitionLag("lagging", partition, 2), PartitionLag("lagging", 1 - partition, 0)],
        key=lambda item: item.partition)


def test_a_closed_binder_refuses_writes_and_ends_polls(binder: MemoryBinder) -> None:
    binder.ensure_topics(["t"], 1)
    output = binder.output()
    consumer = binder.input(["t"], "g", "closed-0")
    binder.close()
    with pytest.raises(ServiceUnavailableError):
        output.flush()
    with pytest.raises(ServiceUnavailableError):
        output.send("t", keyed(1))
    assert consumer.poll(10, 0.01) == []


def test_the_factory_names_the_valid_binders() -> None:
    assert isinstance(create_binder("memory"), MemoryBinder)
    with pytest.raises(ConfigError, match="kafka, memory"):
        create_binder("rabbit")
