"""`normalize`: validate and clean track upserts and deletes by CATALOG.md's rules; invalid ones go to the DLQ."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError

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


# Most records are track upserts: they skip the union's discriminator and go straight to the track schema.
_validate_track = TrackDocument.__pydantic_validator__.validate_json
_track_json = TrackDocument.__pydantic_serializer__.to_json
# Deletes are written with "op" first: a look at the head of the value sends those to the union at once.
_OP_HEAD_BYTES = 32


def _validate(value: bytes | str) -> TrackDocument | TrackDelete:
    """The union's result. A record that passes the track schema has no "op" key (the schema forbids extra keys),
    which is also what the union would pick; only a record that fails it may be a delete."""
    raw = value.encode() if isinstance(value, str) else value
    if raw.find(b'"op"', 0, _OP_HEAD_BYTES) >= 0:
        return ADAPTER.validate_json(raw)
    try:
        return _validate_track(raw)  # type: ignore[no-any-return]
    except ValidationError:
        # "op" further in, or a key spelled with escapes that may still be "op": let the union decide
        if b'"op"' in raw or b"\\u" in raw:
            return ADAPTER.validate_json(raw)
        raise


class NormalizeOptions(AppOptions):
    require_isrc: bool = Field(default=False, description="A track without an ISRC is invalid (to the DLQ): for "
                                                          "feeds whose every track must carry one.")


_NO_ISRC = [{"field": "isrc", "message": "a track needs an ISRC here (--require-isrc)"}]


class Normalize(ProcessorApp[NormalizeOptions]):
    name = "normalize"
    options_model = NormalizeOptions

    def process(self, batch: Sequence[Record]) -> Outcome:
        outcome = Outcome()
        outputs, failures = outcome.outputs, outcome.failures
        require_isrc = self.options.require_isrc
        for record in batch:
            value = record.value
            if not value or not isinstance(value, bytes | str):
                failures.append(Failure(record, [{"field": "", "message": "empty record value"}], "empty"))
                continue
            try:
                change = _validate(value)
            except ValidationError as exc:
                failures.append(Failure(record, validation_reasons(exc, _TAGS), kind=_failure_kind(exc)))
                continue
            if isinstance(change, TrackDocument):
                if require_isrc and change.isrc is None:
                    failures.append(Failure(record, list(_NO_ISRC)))
                    continue
                key, encoded = change.id, _track_json(change, by_alias=True)
            else:
                key, encoded = change.track_id, ADAPTER.dump_json(change, by_alias=True)
            outputs.append(Record(str(key).encode(), encoded, record.headers))
        return outcome


def _failure_kind(exc: ValidationError) -> str:
    return "malformed-json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "invalid"
