"""`normalize`: validate and clean track upserts and deletes by CATALOG.md's rules; invalid ones go to the DLQ."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import Discriminator, Tag, TypeAdapter, ValidationError

from processors.base import AppOptions, Failure, Outcome, ProcessorApp
from streams.catalog.models import TrackDelete, TrackDocument
from streams.records import Record
from streams.runtime.contract import validation_reasons


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "delete" if "op" in value else "track"
    return "delete" if getattr(value, "op", None) else "track"


TrackChange = Annotated[
    Annotated[TrackDocument, Tag("track")] | Annotated[TrackDelete, Tag("delete")], Discriminator(_kind)
]
ADAPTER: TypeAdapter[TrackDocument | TrackDelete] = TypeAdapter(TrackChange)
_TAGS = frozenset({"track", "delete"})


class NormalizeOptions(AppOptions):
    pass


class Normalize(ProcessorApp[NormalizeOptions]):
    name = "normalize"
    options_model = NormalizeOptions

    def process(self, batch: Sequence[Record]) -> Outcome:
        outcome = Outcome()
        for record in batch:
            if not isinstance(record.value, bytes | str) or not record.value:
                outcome.failures.append(Failure(record, [{"field": "", "message": "empty record value"}], "empty"))
                continue
            try:
                change = ADAPTER.validate_json(record.value)
            except ValidationError as exc:
                outcome.failures.append(Failure(record, validation_reasons(exc, _TAGS), kind=_failure_kind(exc)))
                continue
            key = change.track_id if isinstance(change, TrackDelete) else change.id
            outcome.outputs.append(
                Record(key=str(key).encode(), value=change.model_dump_json(by_alias=True).encode(),
                       headers=record.headers)
            )
        return outcome


def _failure_kind(exc: ValidationError) -> str:
    return "malformed-json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "invalid"
