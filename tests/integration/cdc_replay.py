"""Replaying a CDC source's change topic, as the CDC integration tests check it against the tables: changes applied
in version order to an empty map keyed by table + primary key, or in any order behind a version guard as a sink
applies them, and per-row checksums to compare the result with the tables."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

from streams.records import TX_SEQ_HEADER, VERSION_HEADER
from streams.serde import canonical_json, dumps
from tests.integration.services import unique_name

Row = dict[str, Any]
Message = tuple[bytes | None, bytes, dict[str, bytes]]


def versions(message: Message) -> tuple[int, int]:
    headers = message[2]
    return int(headers[VERSION_HEADER]), int(headers[TX_SEQ_HEADER])


def replay(messages: list[Message]) -> dict[tuple[str, bytes], Row]:
    """Apply the changes in version order to an empty map keyed by table + primary key."""
    state: dict[tuple[str, bytes], Row] = {}
    for _, value, _ in sorted(messages, key=versions):
        change = orjson.loads(value)
        table = change["table"]
        if change["op"] == "t":
            for key in [k for k in state if k[0] == table]:
                del state[key]
            continue
        where = (table, canonical_json(change["key"]))
        if change["op"] == "d":
            state.pop(where, None)
        elif change["op"] == "c":
            state[where] = change["after"]
        else:  # 'u': columns named in `unchanged` kept the value the row had
            kept = state.get(where, {})
            state[where] = {**{name: kept[name] for name in change.get("unchanged", ())}, **change["after"]}
    return state


def checksums(rows: dict[tuple[str, bytes], Row]) -> dict[tuple[str, bytes], str]:
    return {key: hashlib.sha256(canonical_json(row)).hexdigest() for key, row in rows.items()}


def guarded_replay(messages: list[Message]) -> dict[tuple[str, bytes], Row]:
    """Apply the changes in any order as a version-guarded store does: a change lands only if its (version, place)
    is newer than what the key (or a truncate of its table) last saw; deletes leave tombstones."""
    rows: dict[tuple[str, bytes], tuple[tuple[int, int], Row | None]] = {}
    truncated: dict[str, tuple[int, int]] = {}
    for _, value, headers in messages:
        change = orjson.loads(value)
        stamp = (int(headers[VERSION_HEADER]), int(headers.get(TX_SEQ_HEADER, b"0")))
        table = change["table"]
        if change["op"] == "t":
            truncated[table] = max(truncated.get(table, stamp), stamp)
            continue
        where = (table, canonical_json(change["key"]))
        held = rows.get(where)
        if (held is not None and held[0] >= stamp) or truncated.get(table, (0, 0)) >= stamp:
            continue
        if change["op"] == "d":
            rows[where] = (stamp, None)
        elif change["op"] == "u" and change.get("unchanged"):
            kept = held[1] if held is not None and held[1] is not None else {}
            rows[where] = (stamp, {**{name: kept[name] for name in change["unchanged"]}, **change["after"]})
        else:
            rows[where] = (stamp, change["after"])
    return {key: row for key, (stamp, row) in rows.items()
            if row is not None and truncated.get(key[0], (0, 0)) < stamp}


def snapshot_rows_read_once(messages: list[Message]) -> int:
    """How many `op=r` records there are, having checked that no row is among them twice and that all carry the one
    snapshot's version."""
    snapshot = [(key, headers) for key, value, headers in messages if b'"op":"r"' in value]
    keys = [key for key, _ in snapshot]
    assert len(keys) == len(set(keys)), "a row read twice by the snapshot"
    assert len({headers[VERSION_HEADER] for _, headers in snapshot}) == 1, "snapshot rows of several versions"
    return len(keys)


class TopicTail:
    """Every record of a topic from its start, read on as it grows: one pass over a large topic, however often a
    test asks what has arrived."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("tf_tail"),
                                  "enable.auto.commit": False, "isolation.level": "read_committed"})
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        self.messages: list[Message] = []

    def read(self, seconds: float = 0.5) -> list[Message]:
        """What arrived since the last read (waiting up to `seconds` for the first of it), appended to
        `messages`."""
        new: list[Message] = []
        deadline = time.monotonic() + seconds
        while True:
            batch = self.consumer.consume(10_000, timeout=max(0.0, deadline - time.monotonic()) if not new else 0.2)
            new.extend((m.key(), m.value(), dict(m.headers() or [])) for m in batch if not m.error())
            if not batch and (new or time.monotonic() >= deadline):
                break
        self.messages.extend(new)
        return new

    def holds(self, table: str, key: Row) -> bool:
        """Whether a change of that row has arrived (read on first)."""
        wanted = dumps({"table": table, "key": key})
        self.read()
        return any(k == wanted for k, _, _ in self.messages)

    def close(self) -> None:
        self.consumer.close()
