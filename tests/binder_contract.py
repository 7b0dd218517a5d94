"""Binder contract checks for any Binder: unit tests run them in memory, integration tests on Kafka."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from streams.binders.base import Binder, InputBinding, PartitionLag, TransactionalOutput
from streams.binders.partitioner import partition_for
from streams.records import Record

Names = Callable[[str], str]
"""Gives a fresh topic or group name for a prefix (unique per test on a shared Kafka)."""

WAIT_S = 30.0


def read(binding: InputBinding, count: int, max_records: int = 500,
         timeout_s: float = WAIT_S) -> list[Record]:
    """Poll until `count` records arrived (never asking for more than that), or the timeout."""
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        records.extend(binding.poll(min(max_records, count - len(records)), 0.2))
    return records


def read_quietly(binding: InputBinding, seconds: float) -> list[Record]:
    """Everything that arrives within `seconds` (normally nothing)."""
    records: list[Record] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        records.extend(binding.poll(500, 0.1))
    return records


def wait_until_assigned(members: Sequence[InputBinding], partitions: int, timeout_s: float = WAIT_S) -> None:
    """Serve the group protocol until every member owns something and together they own every partition."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        owned = [member.assignment() for member in members]  # type: ignore[attr-defined]
        if all(owned) and sum(len(o) for o in owned) == partitions:
            return
        for member in members:
            assert member.poll(1, 0.1) == [], "nothing was produced yet"
    raise AssertionError(f"group did not settle: {[m.assignment() for m in members]}")  # type: ignore[attr-defined]


def produce(binder: Binder, topic: str, records: Sequence[Record]) -> None:
    output = binder.output()
    try:
        output.send(topic, records)
        output.flush()
    finally:
        output.close()


def keyed(count: int, prefix: str = "track") -> list[Record]:
    return [Record(f"{prefix}-{i}".encode(), {"n": i}, {"tf-version": str(i).encode()}) for i in range(count)]


def where(records: Sequence[Record]) -> list[tuple[str | None, int | None, int | None]]:
    return [(r.topic, r.partition, r.offset) for r in records]


# -- the checks ----------------------------------------------------------------------------------------------


def check_topics_are_created_and_grow_but_never_shrink(binder: Binder, name: Names) -> None:
    topic = name("topics")
    assert binder.partitions(topic) == 0
    binder.ensure_topics([topic], 2)
    assert binder.partitions(topic) == 2
    binder.ensure_topics([topic], 3)
    assert binder.partitions(topic) == 3
    binder.ensure_topics([topic], 1)
    assert binder.partitions(topic) == 3


def check_records_round_trip(binder: Binder, name: Names) -> None:
    topic = name("roundtrip")
    binder.ensure_topics([topic], 1)
    produce(binder, topic, [Record(b"k1", {"title": "밤편지", "n": 1}, {"tf-version": b"7"}),
                            Record(None, b"raw")])
    consumer = binder.input([topic], name("group"), "roundtrip-0")
    try:
        got = read(consumer, 2)
        assert [(r.key, r.value, r.headers) for r in got] == [
            (b"k1", '{"title":"밤편지","n":1}'.encode(), {"tf-version": b"7"}),
            (None, b"raw", {}),
        ]
        assert where(got) == [(topic, 0, 0), (topic, 0, 1)]
        assert all(r.timestamp_ms and r.timestamp_ms > 1_600_000_000_000 for r in got)
    finally:
        consumer.close()


def check_keys_land_on_their_murmur2_partition(binder: Binder, name: Names) -> None:
    topic = name("keys")
    binder.ensure_topics([topic], 4)
    records = keyed(40) + keyed(40)
    produce(binder, topic, records)
    consumer = binder.input([topic], name("group"), "keys-0")
    try:
        got = read(consumer, len(records))
    finally:
        consumer.close()
    assert len(got) == len(records)
    assert all(r.key is not None and r.partition == partition_for(r.key, 4) for r in got)
    assert len({r.partition for r in got}) > 1, "40 keys should spread over several partitions"


def check_group_members_share_partitions(binder: Binder, name: Names) -> None:
    topic, group = name("split"), name("group")
    binder.ensure_topics([topic], 4)
    members = [binder.input([topic], group, "split-0"), binder.input([topic], group, "split-1")]
    try:
        wait_until_assigned(members, 4)
        records = keyed(100)
        produce(binder, topic, records)
        seen: list[list[Record]] = [[], []]
        deadline = time.monotonic() + WAIT_S
        while sum(map(len, seen)) < len(records) and time.monotonic() < deadline:
            for member, bucket in zip(members, seen, strict=True):
                batch = member.poll(50, 0.1)
                member.commit(batch)
                bucket.extend(batch)
        keys = sorted(r.key for bucket in seen for r in bucket if r.key)
        assert keys == sorted(r.key for r in records if r.key), "every record exactly once across the group"
        assert all(seen), "both members got a share"
        partitions = [{r.partition for r in bucket} for bucket in seen]
        assert not partitions[0] & partitions[1], "a partition belongs to one member at a time"
    finally:
        for member in members:
            member.close()


def check_a_new_member_resumes_after_the_committed_offset(binder: Binder, name: Names) -> None:
    topic, group = name("resume"), name("group")
    binder.ensure_topics([topic], 1)
    produce(binder, topic, keyed(10))
    first = binder.input([topic], group, "resume-0")
    got = read(first, 10)
    first.commit(got[:6])
    first.close()
    second = binder.input([topic], group, "resume-1")
    try:
        assert [r.offset for r in read(second, 4)] == [6, 7, 8, 9]
        assert read_quietly(second, 0.5) == []
    finally:
        second.close()


def check_uncommitted_records_are_redelivered_after_a_member_leaves(binder: Binder, name: Names) -> None:
    topic, group = name("redeliver"), name("group")
    binder.ensure_topics([topic], 2)
    leaving = binder.input([topic], group, "redeliver-0")
    staying = binder.input([topic], group, "redeliver-1")
    try:
        wait_until_assigned([leaving, staying], 2)
        records = keyed(20)
        produce(binder, topic, records)
        share_of_leaving = len([r for r in records if (topic, partition_for(r.key or b"", 2))
                                in leaving.assignment()])  # type: ignore[attr-defined]
        uncommitted = read(leaving, share_of_leaving)
        staying.commit(read(staying, len(records) - share_of_leaving))
        leaving.close()  # leaves the group without committing: its partition moves to `staying`
        again = read(staying, len(uncommitted))
        assert sorted(where(again)) == sorted(where(uncommitted))
        assert [r.value for r in sorted(again, key=lambda r: r.offset or 0)] == \
            [r.value for r in sorted(uncommitted, key=lambda r: r.offset or 0)]
    finally:
        leaving.close()
        staying.close()


def check_rewind_delivers_records_again(binder: Binder, name: Names) -> None:
    topic = name("rewind")
    binder.ensure_topics([topic], 1)
    produce(binder, topic, keyed(10))
    consumer = binder.input([topic], name("group"), "rewind-0")
    try:
        got = read(consumer, 10)
        consumer.rewind(got[7:] + got[4:6])  # the lowest offset per partition wins
        assert [r.offset for r in read(consumer, 6)] == [4, 5, 6, 7, 8, 9]
    finally:
        consumer.close()


def check_pause_stops_delivery_until_resume(binder: Binder, name: Names, quiet_s: float = 0.3) -> None:
    topic = name("pause")
    binder.ensure_topics([topic], 1)
    produce(binder, topic, keyed(3))
    consumer = binder.input([topic], name("group"), "pause-0")
    try:
        assert len(read(consumer, 3)) == 3
        consumer.pause()
        produce(binder, topic, keyed(3, prefix="later"))
        deadline = time.monotonic() + quiet_s
        while time.monotonic() < deadline:
            consumer.keepalive()
            assert consumer.poll(100, 0.1) == []
        consumer.resume()
        assert [r.offset for r in read(consumer, 3)] == [3, 4, 5]
    finally:
        consumer.close()


def check_lag_counts_records_not_yet_read(binder: Binder, name: Names) -> None:
    topic = name("lag")
    binder.ensure_topics([topic], 1)
    produce(binder, topic, keyed(10))
    consumer = binder.input([topic], name("group"), "lag-0")
    try:
        got = read(consumer, 4, max_records=4)
        assert [r.offset for r in got] == [0, 1, 2, 3]
        assert consumer.lag() == [PartitionLag(topic, 0, 6)]
        read(consumer, 6)
        assert consumer.lag() == [PartitionLag(topic, 0, 0)]
    finally:
        consumer.close()


def check_transactions_commit_outputs_with_offsets_or_nothing(binder: Binder, name: Names) -> None:
    source, sink, group = name("eos_in"), name("eos_out"), name("group")
    binder.ensure_topics([source, sink], 1)
    produce(binder, source, keyed(4))
    processor = binder.input([source], group, "eos-0")
    reader = binder.input([sink], name("reader"), "reader-0")
    txn = binder.output(transactional_id=name("txn"))
    assert isinstance(txn, TransactionalOutput)
    try:
        batch = read(processor, 4)
        txn.begin()
        txn.send(sink, [Record(b"aborted", b"A")])
        txn.abort()
        txn.begin()
        txn.send(sink, [Record(r.key, r.value + b"!") for r in batch[:2]])
        txn.commit_with_offsets(processor, batch[:2])
        # The aborted record sits before the committed ones in the log: reading two proves it is skipped.
        assert [r.value for r in read(reader, 2)] == [r.value + b"!" for r in batch[:2]]

        processor.close()
        processor = binder.input([source], group, "eos-1")
        rest = read(processor, 2)
        assert [r.offset for r in rest] == [2, 3], "the transaction moved the group's offsets"

        txn.begin()
        txn.send(sink, [Record(b"aborted", b"B")])
        txn.abort()
        txn.begin()
        txn.send(sink, [Record(b"marker", b"M")])
        txn.commit_with_offsets(processor, [])
        assert [r.value for r in read(reader, 1)] == [b"M"]

        processor.close()
        processor = binder.input([source], group, "eos-2")
        assert [r.offset for r in read(processor, 2)] == [2, 3], "an aborted transaction moves no offsets"
    finally:
        txn.close()
        reader.close()
        processor.close()


CHECKS: list[Callable[[Binder, Names], None]] = [
    check_topics_are_created_and_grow_but_never_shrink,
    check_records_round_trip,
    check_keys_land_on_their_murmur2_partition,
    check_group_members_share_partitions,
    check_a_new_member_resumes_after_the_committed_offset,
    check_uncommitted_records_are_redelivered_after_a_member_leaves,
    check_rewind_delivers_records_again,
    check_pause_stops_delivery_until_resume,
    check_lag_counts_records_not_yet_read,
    check_transactions_commit_outputs_with_offsets_or_nothing,
]
