"""`--partition-key=<field>`: key each output record by a field of its JSON value, so one entity's records go to
one partition, and so to one instance of the next app, in order.

The field is a dotted path into the value (`_id`, `album.album_id`). A value that is not JSON, or lacks the field,
keeps the key its app gave it: its partition is then the app's choice, as without the option.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import orjson

from streams.records import Record


class KeyPath:
    def __init__(self, path: str) -> None:
        self.path = path
        self._parts = tuple(path.split("."))
        self.unkeyed = 0  # records that kept their own key: no such field

    def key_of(self, value: Any) -> bytes | None:
        """The key `value` gives, or None when it has no such field (or is not a JSON object)."""
        try:
            current = orjson.loads(value) if isinstance(value, bytes | bytearray | memoryview | str) else value
        except orjson.JSONDecodeError:
            return None
        for part in self._parts:
            if not isinstance(current, dict) or part not in current:
                return None
            current = current[part]
        if current is None or isinstance(current, dict | list):
            return None
        return current.encode() if isinstance(current, str) else orjson.dumps(current)

    def keyed(self, records: Sequence[Record]) -> list[Record]:
        """The records with their keys replaced by the field's value where they have it."""
        out = []
        for record in records:
            key = self.key_of(record.value)
            if key is None:
                self.unkeyed += 1
                out.append(record)
            else:
                out.append(dataclasses.replace(record, key=key))
        return out
