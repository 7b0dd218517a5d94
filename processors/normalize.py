"""`normalize`: validate and clean track upserts and deletes by CATALOG.md's rules; invalid ones go to the DLQ."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, ValidationError

from processors.base import AppOptions, Failure, Outcome, ProcessorApp
from streams.catalog.changes import OP_HEAD_BYTES, Rejection, check_change, track_json, validate_track
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
            value = record.value
            # The common case in the loop itself: a track upsert (bytes, no "op" at its head) that passes the track
            # schema. Everything else — deletes, failures, --require-isrc — takes check_change's one path.
            if not require_isrc and value.__class__ is bytes and value.find(b'"op"', 0, OP_HEAD_BYTES) < 0:
                try:
                    track = validate_track(value)
                except ValidationError:
                    pass
                else:
                    outputs.append(Record(str(track.id).encode(), track_json(track, by_alias=True), record.headers))
                    continue
            checked = check_change(value, require_isrc)
            if isinstance(checked, Rejection):
                failures.append(Failure(record, checked.reasons, checked.kind))
            else:
                key, encoded = checked
                outputs.append(Record(key, encoded, record.headers))
        return outcome
