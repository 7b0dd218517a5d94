"""Durable progress of a CDC source's initial snapshot, kept in a Kafka topic of its own (`<stream>.<label>.snapshot`)
through the binder: the last state written wins. Written only after the rows it covers are durable."""

from __future__ import annotations

import time
from typing import Any

from streams.binders.base import Binder, InputBinding, OutputBinding
from streams.errors import TransientError
from streams.records import Record
from streams.serde import dumps, loads

PROGRESS_KEY = b"snapshot"


class SnapshotProgressStore:
    def __init__(self, binder: Binder, topic: str) -> None:
        self.binder = binder
        self.topic = topic
        self._output: OutputBinding | None = None

    def load(self, timeout_s: float = 60.0) -> dict[str, Any] | None:
        """The last progress written, or None when no snapshot ever started."""
        self.binder.ensure_topics([self.topic])
        reader: InputBinding = self.binder.input([self.topic], f"{self.topic}.reader", "progress")
        last: dict[str, Any] | None = None
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                records = reader.poll(500, 0.5)
                for record in records:
                    if record.key == PROGRESS_KEY:
                        last = loads(record.value)
                lags = reader.lag()
                if not records and lags and all(item.lag == 0 for item in lags):
                    return last
        finally:
            reader.close()
        raise TransientError(f"could not read the snapshot progress in {self.topic} within {timeout_s:g}s")

    def save(self, state: dict[str, Any]) -> None:
        if self._output is None:
            self._output = self.binder.output()
        self._output.send(self.topic, [Record(key=PROGRESS_KEY, value=dumps(state))])
        self._output.flush()

    def close(self) -> None:
        if self._output is not None:
            self._output.close()
            self._output = None
