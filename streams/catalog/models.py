"""The catalog's documents and change events as pydantic v2 models, carrying CATALOG.md's validity rules.

Validation happens once, when a record enters (the `normalize` processor); downstream apps trust it.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

ISRC_PATTERN = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}[0-9]{7}$")
MAX_DURATION_MS = 86_400_000
# The legacy columns' integer ranges (CATALOG.md): a value outside its column's range is invalid, never rounded.
BIGINT_MAX = 2**63 - 1
INTEGER_MAX = 2**31 - 1
SMALLINT_MAX = 2**15 - 1


class AlbumType(StrEnum):
    ALBUM = "ALBUM"
    SINGLE = "SINGLE"
    EP = "EP"
    COMPILATION = "COMPILATION"


class ArtistRole(StrEnum):
    MAIN = "MAIN"
    FEATURED = "FEATURED"
    COMPOSER = "COMPOSER"
    LYRICIST = "LYRICIST"
    ARRANGER = "ARRANGER"


ROLE_RANK: dict[str, int] = {role.value: rank for rank, role in enumerate(ArtistRole)}


def clean_text(value: str) -> str:
    """Unicode NFC, trimmed, inner whitespace collapsed to one space."""
    return unicodedata.normalize("NFC", " ".join(value.split()))


def _non_empty_text(value: str) -> str:
    cleaned = clean_text(value)
    if not cleaned:
        raise ValueError("must not be empty or only whitespace")
    return cleaned


def _optional_text(value: str | None) -> str | None:
    if value is None:
        return None
    return clean_text(value) or None


def _normalize_isrc(value: object) -> object:
    if value is None or not isinstance(value, str):
        return value
    compact = value.strip().upper().replace("-", "")
    if not compact:
        return None
    if not ISRC_PATTERN.match(compact):
        raise ValueError("must be 12 characters: 2-letter country, 3 alphanumerics, 7 digits (hyphens allowed)")
    return compact


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


Text = Annotated[str, AfterValidator(_non_empty_text)]
OptionalText = Annotated[str | None, AfterValidator(_optional_text)]
Isrc = Annotated[str | None, BeforeValidator(_normalize_isrc)]
# Serialized natively as ISO-8601: dates `2024-02-20`, timestamps in UTC with `Z` (`2024-02-20T09:00:00Z`,
# a fraction as 6 digits: `…00.250000Z`). No Python call per field on the way out.
Timestamp = Annotated[datetime, AfterValidator(_utc)]
IsoDate = date
# Strict: a JSON float or string is not an integer here, even when it holds a whole number.
EntityId = Annotated[int, Field(ge=1, le=BIGINT_MAX, strict=True)]
SmallPositive = Annotated[int, Field(ge=1, le=SMALLINT_MAX, strict=True)]


class _Model(BaseModel):
    # Enum fields hold their string value: serializing them then needs no Python call per field.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False, use_enum_values=True)


class ArtistCredit(_Model):
    artist_id: EntityId
    name: Text
    role: ArtistRole


class AlbumArtist(_Model):
    artist_id: EntityId
    name: Text


class AlbumRef(_Model):
    album_id: EntityId
    title: Text
    album_type: AlbumType
    release_date: IsoDate | None = None
    label: OptionalText = None


class TrackDocument(_Model):
    """One document per track in `catalog.tracks`: everything a player page needs in one read."""

    id: EntityId = Field(validation_alias=AliasChoices("_id", "track_id", "id"), serialization_alias="_id")
    title: Text
    disc_no: SmallPositive = 1
    track_no: SmallPositive
    duration_ms: Annotated[int, Field(ge=1, le=MAX_DURATION_MS, strict=True)] | None = None
    isrc: Isrc = None
    explicit: bool = False
    album: AlbumRef
    artists: list[ArtistCredit] = Field(min_length=1)
    genres: list[Text] = Field(default_factory=list)
    updated_at: Timestamp

    @field_validator("artists")
    @classmethod
    def _order_artists(cls, artists: list[ArtistCredit]) -> list[ArtistCredit]:
        if not any(credit.role == ArtistRole.MAIN for credit in artists):
            raise ValueError("at least one artist with role MAIN is required")
        # Stable sort: within one role the producer's order is the credit order (`ord`).
        return sorted(artists, key=lambda credit: ROLE_RANK[credit.role])

    @field_validator("genres")
    @classmethod
    def _dedupe_genres(cls, genres: list[str]) -> list[str]:
        return sorted(set(genres))


class TrackDelete(_Model):
    """A delete on the ingestion path: `{"op": "delete", "track_id": ...}`."""

    op: Literal["delete"]
    track_id: EntityId
    updated_at: Timestamp | None = None


class AlbumDocument(_Model):
    id: EntityId = Field(validation_alias=AliasChoices("_id", "album_id", "id"), serialization_alias="_id")
    title: Text
    album_type: AlbumType
    release_date: IsoDate | None = None
    label: OptionalText = None
    artists: list[AlbumArtist] = Field(default_factory=list)
    track_count: Annotated[int, Field(ge=0, le=INTEGER_MAX, strict=True)] = 0
    updated_at: Timestamp


class ArtistDocument(_Model):
    id: EntityId = Field(validation_alias=AliasChoices("_id", "artist_id", "id"), serialization_alias="_id")
    name: Text
    country: Annotated[str | None, Field(pattern=r"^[A-Z]{2}$")] = None
    debut_year: Annotated[int, Field(ge=1000, le=9999, strict=True)] | None = None
    updated_at: Timestamp


class ChangeEvent(_Model):
    """One row change read from a legacy table (CDC or snapshot), before it is assembled into documents.

    `version` is monotonic per key and comparable across the tables of one source
    (PostgreSQL: commit LSN; MariaDB/MySQL: binlog position or GTID sequence; snapshot rows: the snapshot's).
    """

    source: Text
    table: Text
    op: Literal["c", "u", "d", "r"]
    key: dict[str, Any] = Field(min_length=1)
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    version: Annotated[int, Field(ge=0, le=BIGINT_MAX, strict=True)]
    committed_at: Timestamp | None = None

    @model_validator(mode="after")
    def _image_matches_op(self) -> ChangeEvent:
        if self.op == "d" and self.after is not None:
            raise ValueError("a delete ('d') carries no 'after' image")
        if self.op != "d" and self.after is None:
            raise ValueError(f"op '{self.op}' needs an 'after' image")
        return self


DOCUMENT_MODELS: dict[str, type[BaseModel]] = {
    "track": TrackDocument,
    "track-delete": TrackDelete,
    "album": AlbumDocument,
    "artist": ArtistDocument,
    "change": ChangeEvent,
}


def timestamp_version(value: datetime) -> int:
    """A document's version when no change-log position is known: its `updated_at` in microseconds."""
    moment = _utc(value)
    return (moment - _EPOCH) // _MICROSECOND


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
