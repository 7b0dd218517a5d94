"""The ingestion payload — a track upsert or a delete — checked by CATALOG.md's rules and encoded, in one place.

The `normalize` processor and the `http` source both call `check_change`, so a record means the same thing and
fails with the same reasons whether it came over Kafka or over HTTP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Discriminator, Tag, TypeAdapter, ValidationError

from streams.catalog.models import TrackDelete, TrackDocument
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
validate_track = TrackDocument.__pydantic_validator__.validate_json
track_json = TrackDocument.__pydantic_serializer__.to_json
# Deletes are written with "op" first: a look at the head of the value sends those to the union at once.
OP_HEAD_BYTES = 32

NO_ISRC = "a track needs an ISRC here (--require-isrc)"
_POSITION = re.compile(r" at line (\d+) column (\d+)$")


@dataclass(slots=True)
class Rejection:
    """Why a record is not a valid change: every {field, message}, and what kind of failure it is.

    `kind` is `malformed-json` (not JSON at all: `line` and `column` say where, 1-based), `invalid` (JSON that
    breaks the catalog's rules) or `empty`.
    """

    reasons: list[dict[str, str]]
    kind: str = "invalid"
    line: int | None = None
    column: int | None = None


def check_change(value: object, require_isrc: bool = False) -> tuple[bytes, bytes] | Rejection:
    """The record's key (the track id) and its normalized JSON, or a Rejection with every reason."""
    if not value or not isinstance(value, bytes | str):
        return Rejection([{"field": "", "message": "empty record value"}], "empty")
    try:
        change = _validate(value)
    except ValidationError as exc:
        return _rejection(exc)
    if isinstance(change, TrackDocument):
        if require_isrc and change.isrc is None:
            return Rejection([{"field": "isrc", "message": NO_ISRC}])
        return str(change.id).encode(), track_json(change, by_alias=True)
    return str(change.track_id).encode(), ADAPTER.dump_json(change, by_alias=True)


def _validate(value: bytes | str) -> TrackDocument | TrackDelete:
    """The union's result. A record that passes the track schema has no "op" key (the schema forbids extra keys),
    which is also what the union would pick; only a record that fails it may be a delete."""
    raw = value.encode() if isinstance(value, str) else value
    if raw.find(b'"op"', 0, OP_HEAD_BYTES) >= 0:
        return ADAPTER.validate_json(raw)
    try:
        return validate_track(raw)  # type: ignore[no-any-return]
    except ValidationError:
        # "op" further in, or a key spelled with escapes that may still be "op": let the union decide
        if b'"op"' in raw or b"\\u" in raw:
            return ADAPTER.validate_json(raw)
        raise


def _rejection(exc: ValidationError) -> Rejection:
    errors = exc.errors(include_url=False)
    for error in errors:
        if error["type"] == "json_invalid":
            message = str(error["msg"])
            where = _POSITION.search(message)
            line, column = (int(where[1]), max(int(where[2]), 1)) if where else (None, None)
            return Rejection([{"field": "", "message": message}], "malformed-json", line, column)
    return Rejection(validation_reasons(exc, _TAGS))
