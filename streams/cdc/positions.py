"""A CDC source's durable log position, kept in a Kafka topic of its own (`<stream>.<label>.offsets`) through the
binder, the way Kafka Connect keeps source offsets: the last position written wins.

Why Kafka and not the platform state: the position is only worth anything next to the changes it covers, which are
in Kafka, and every instance already reaches Kafka (a pod need not reach the platform database, and a stream
undeployed and deployed again keeps its topics). A position is written only after every change up to it was
acknowledged by Kafka, so the topic never runs ahead of the changes.
"""

from __future__ import annotations

import time
from typing import Any

from streams.binders.base import Binder, InputBinding, OutputBinding
from streams.errors import TransientError
from streams.records import Record
from streams.serde import dumps, loads

POSITION_KEY = b"position"


def positions_topic(stream: str, label: str) -> str:
    return f"{stream}.{label}.offsets"


class PositionStore:
    def __init__(self, binder: Binder, topic: str) -> None:
        self.binder = binder
        self.topic = topic
        self._output: OutputBinding | None = None

    def load(self, timeout_s: float = 60.0) -> dict[str, Any] | None:
        """The last position written, or None when the source never ran."""
        self.binder.ensure_topics([self.topic])
        reader: InputBinding = self.binder.input([self.topic], f"{self.topic}.reader", "positions")
        last: dict[str, Any] | None = None
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                records = reader.poll(1000, 0.5)
                for record in records:
                    if record.key == POSITION_KEY:
                        last = loads(record.value)
                lags = reader.lag()
                if not records and lags and all(item.lag == 0 for item in lags):
                    return last
        finally:
            reader.close()
        raise TransientError(f"could not read the log position in {self.topic} within {timeout_s:g}s")

    def save(self, position: dict[str, Any], flush: bool = False) -> None:
        """Write a position; `flush` waits until Kafka has it (else it goes with the producer's next delivery)."""
        if self._output is None:
            self._output = self.binder.output()
        self._output.send(self.topic, [Record(key=POSITION_KEY, value=dumps(position))])
        if flush:
            self._output.flush()

    def close(self) -> None:
        if self._output is not None:
            self._output.flush()
            self._output.close()
            self._output = None
