"""Replaying a CDC source's change topic, as the CDC integration tests check it against the tables: changes applied
in version order to an empty map keyed by table + primary key, and per-row checksums to compare the two."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from streams.records import TX_SEQ_HEADER, VERSION_HEADER
from streams.serde import canonical_json

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
