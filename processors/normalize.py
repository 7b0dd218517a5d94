"""`normalize`: validate and clean track upserts and deletes by CATALOG.md's rules; invalid ones go to the DLQ."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from processors.base import AppOptions, Failure, Outcome, ProcessorApp
from streams.catalog.changes import Rejection, check_change
from streams.records import Record


class NormalizeOptions(AppOptions):
    require_isrc: bool = Field(default=False, description="A track without an ISRC is invalid (to the DLQ): for "
                                                          "feeds whose every track must carry one.")


class Normalize(ProcessorApp[NormalizeOptions]):
    name = "normalize"
    options_model = NormalizeOptions

    def process(self, batch: Sequence[Record]) -> Outcome:
        outcome = Outcome()
        outputs, failures = outcome.outputs, outcome.failures
        require_isrc = self.options.require_isrc
        for record in batch:
            checked = check_change(record.value, require_isrc)
            if isinstance(checked, Rejection):
                failures.append(Failure(record, checked.reasons, checked.kind))
            else:
                key, encoded = checked
                outputs.append(Record(key, encoded, record.headers))
        return outcome
