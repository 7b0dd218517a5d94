"""Values as a relational column holds them: a document's value checked against its column (type, length, range,
NOT NULL) before any SQL, and versions converted between the stores' integers and a version column's values."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Date, DateTime, Integer, SmallInteger, String

from streams.catalog.models import timestamp_version

_INT_RANGES = {SmallInteger: 2**15, Integer: 2**31, BigInteger: 2**63}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def fit_column(column: Column[Any], value: Any, zone: str) -> Any:
    """`value` as `column` holds it; ValueError says why it does not fit."""
    kind = column.type
    if value is None:
        if not column.nullable and column.server_default is None and column.default is None:
            raise ValueError("is required: the column is NOT NULL")
        return None
    if isinstance(kind, DateTime):
        moment = _parse_datetime(value)
        return moment.astimezone(_zone(zone)).replace(tzinfo=None) if moment.tzinfo else moment
    if isinstance(kind, Date):
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an ISO-8601 date") from None
        raise ValueError(f"{value!r} is not a date")
    if isinstance(kind, Boolean):
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not a boolean")
        return value
    if isinstance(kind, Integer):
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, int):
            raise ValueError(f"{value!r} is not an integer")
        limit = next((bound for cls, bound in _INT_RANGES.items() if type(kind) is cls), None)
        limit = limit or _int_limit(kind)
        if not -limit <= value < limit:
            raise ValueError(f"{value} does not fit {kind.compile()}")
        return value
    if isinstance(kind, String):
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not text")
        if kind.length is not None and len(value) > kind.length:
            raise ValueError(f"{len(value)} characters do not fit {_type_name(kind)}({kind.length})")
        return value
    return value


def _int_limit(kind: Integer) -> int:
    name = type(kind).__name__.upper()
    if "TINY" in name:
        return 2**7
    if "SMALL" in name:
        return 2**15
    if "BIG" in name:
        return 2**63
    return 2**31


def _type_name(kind: String) -> str:
    name = type(kind).__name__.upper()
    return "CHAR" if "CHAR" in name and "VAR" not in name else "VARCHAR"


def _parse_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not an ISO-8601 timestamp")


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def version_number(value: Any, zone: str) -> int:
    """A version column's value as the integer the tombstones keep (timestamps: microseconds since the epoch)."""
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=_zone(zone)) if value.tzinfo is None else value
        return timestamp_version(aware)
    return int(value)


def version_value(number: int, column: Column[Any], zone: str) -> Any:
    """A change's version as the version column holds it."""
    if isinstance(column.type, DateTime):
        moment = _EPOCH + timedelta(microseconds=number)
        return moment.astimezone(_zone(zone)).replace(tzinfo=None)
    return number
