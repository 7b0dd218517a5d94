"""`kafka` source: consume an existing topic into the stream (consumer group = the stream)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from sources.base import AppOptions, SourceApp
from streams.binders.base import InputBinding
from streams.records import Record


class KafkaOptions(AppOptions):
    topic: str = Field(min_length=1, description="The existing topic to read.")
    group: str | None = Field(default=None, description="Consumer group [default: the stream name].")


class KafkaSource(SourceApp[KafkaOptions]):
    name = "kafka"
    options_model = KafkaOptions

    def setup(self) -> None:
        ctx = self.context
        self._input: InputBinding = ctx.binder.input(
            [self.options.topic], self.options.group or ctx.stream, f"{ctx.label}-{ctx.instance}"
        )

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        return self._input.poll(max_records, timeout_s)

    def ack(self, records: Sequence[Record]) -> None:
        self._input.commit(records)

    def close(self) -> None:
        self._input.close()
