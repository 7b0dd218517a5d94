"""`slow`: a processor that passes records through, taking a fixed time per record (a stand-in for heavy work)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from pydantic import Field

from processors.base import AppOptions, Outcome, ProcessorApp
from streams.records import Record


class SlowOptions(AppOptions):
    per_record_ms: float = Field(default=5.0, ge=0, description="Time spent on each record.")


class Slow(ProcessorApp[SlowOptions]):
    name = "slow"
    options_model = SlowOptions

    def process(self, batch: Sequence[Record]) -> Outcome:
        time.sleep(len(batch) * self.options.per_record_ms / 1000)
        outcome = Outcome()
        outcome.outputs.extend(Record(record.key, record.value, record.headers) for record in batch)
        return outcome
