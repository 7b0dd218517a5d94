"""What both binders do to a batch the same way: offsets per partition, values and keys as wire bytes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streams.records import Record
from streams.serde import dumps

TopicPartitionKey = tuple[str, int]


def next_offsets(records: Sequence[Record]) -> dict[TopicPartitionKey, int]:
    """The offset to commit per partition: one past the highest record of the batch on it."""
    offsets: dict[TopicPartitionKey, int] = {}
    for record in records:
        if record.topic is None or record.partition is None or record.offset is None:
            continue  # not read from a binder: nothing to commit for it
        where = (record.topic, record.partition)
        if record.offset + 1 > offsets.get(where, -1):
            offsets[where] = record.offset + 1
    return offsets


def first_offsets(records: Sequence[Record]) -> dict[TopicPartitionKey, int]:
    """Where to seek back per partition so that every one of these records is read again."""
    offsets: dict[TopicPartitionKey, int] = {}
    for record in records:
        if record.topic is None or record.partition is None or record.offset is None:
            continue
        where = (record.topic, record.partition)
        if where not in offsets or record.offset < offsets[where]:
            offsets[where] = record.offset
    return offsets


def wire_value(value: Any) -> bytes | None:
    """Bytes as they are, None as a tombstone, anything else (a model, a dict) as JSON."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return dumps(value)


def wire_key(key: bytes | str | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key
