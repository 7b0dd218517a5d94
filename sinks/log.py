"""`log` sink: write each record to the app's log, for trying streams out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from sinks.base import AppOptions, Outcome, SinkApp
from streams.records import Record


class LogOptions(AppOptions):
    level: Literal["DEBUG", "INFO", "WARNING"] = Field(default="INFO", description="Log level of each line.")
    max_chars: int = Field(default=500, ge=10, description="Longer values are cut.")


class LogSink(SinkApp[LogOptions]):
    name = "log"
    options_model = LogOptions

    def write(self, batch: Sequence[Record]) -> Outcome:
        level = self.options.level
        log = self.context.log
        for record in batch:
            value = record.value.decode(errors="replace") if isinstance(record.value, bytes) else str(record.value)
            key = record.key.decode(errors="replace") if record.key else ""
            log.log(_LEVELS[level], "%s key=%s %s", record.origin(), key, value[: self.options.max_chars])
        return Outcome()


_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30}
