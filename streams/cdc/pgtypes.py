"""PostgreSQL text output → Python values, chosen by the column's type OID (as pgoutput's Relation names it).

Exact by design: numeric → Decimal (NaN and ±Infinity included), int8 → int, timestamptz → an aware UTC datetime,
timestamp → a naive one, bytea → bytes, json/jsonb → parsed JSON (its numbers as
JSON parsers read them: 64-bit integers and doubles), arrays → lists of their element type. Values outside
what Python represents (dates before year 1, ±infinity timestamps) and types not listed stay PostgreSQL's text.
Assumes the server's DateStyle is ISO (its default), which the replication connection sets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

import orjson

Converter = Callable[[str], Any]


def _bool(text: str) -> bool:
    return text in ("t", "true")  # the type's output, or a `::text` cast's (the snapshot reads those)


def _bytea(text: str) -> bytes:
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    return _bytea_escaped(text)


def _bytea_escaped(text: str) -> bytes:
    """The old `escape` bytea output: backslash + three octal digits, `\\\\` for a backslash."""
    out, i = bytearray(), 0
    while i < len(text):
        if text[i] == "\\":
            if text[i + 1] == "\\":
                out.append(0x5C)
                i += 2
            else:
                out.append(int(text[i + 1:i + 4], 8))
                i += 4
        else:
            out.extend(text[i].encode())
            i += 1
    return bytes(out)


def _date(text: str) -> date | str:
    try:
        return date.fromisoformat(text)
    except ValueError:  # infinity, -infinity, BC dates, years past 9999
        return text


def _timestamp(text: str) -> datetime | str:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return text


def _timestamptz(text: str) -> datetime | str:
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):
        return text


def _json(text: str) -> Any:
    return orjson.loads(text)


def _float(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else text  # JSON has no NaN or infinity; null would lie


SCALARS: Final[dict[int, Converter]] = {
    16: _bool,  # bool
    17: _bytea,  # bytea
    18: str,  # "char"
    19: str,  # name
    20: int,  # int8
    21: int,  # int2
    23: int,  # int4
    25: str,  # text
    26: int,  # oid
    114: _json,  # json
    700: _float,  # float4
    701: _float,  # float8
    1042: str,  # bpchar (padded as stored)
    1043: str,  # varchar
    1082: _date,  # date
    1114: _timestamp,  # timestamp
    1184: _timestamptz,  # timestamptz
    1700: Decimal,  # numeric
    2950: str,  # uuid
    3802: _json,  # jsonb
}

ARRAYS: Final[dict[int, int]] = {  # array type OID → element type OID
    1000: 16, 1001: 17, 1002: 18, 1003: 19, 1016: 20, 1005: 21, 1007: 23, 1009: 25, 1028: 26, 199: 114, 1021: 700,
    1022: 701, 1014: 1042, 1015: 1043, 1182: 1082, 1115: 1114, 1185: 1184, 1231: 1700, 2951: 2950, 3807: 3802,
}


def converter(type_oid: int) -> Converter:
    """How to read a column of this type; unknown types (enums, domains, geometry …) stay text."""
    scalar = SCALARS.get(type_oid)
    if scalar is not None:
        return scalar
    element = ARRAYS.get(type_oid)
    if element is not None:
        element_converter = SCALARS[element]
        return lambda text: parse_array(text, element_converter)
    return str


def parse_array(text: str, element: Converter) -> list[Any]:
    """A PostgreSQL array literal (`{1,NULL,"a b"}`, nested `{{1,2},{3,4}}`, `[0:1]={…}` bounds dropped)."""
    if text.startswith("["):
        text = text[text.index("=") + 1:]
    values, end = _array_items(text, 0, element)
    if end != len(text):
        raise ValueError(f"trailing characters after an array literal: {text[end:]!r}")
    return values


def _array_items(text: str, start: int, element: Converter) -> tuple[list[Any], int]:
    if text[start] != "{":
        raise ValueError(f"an array literal starts with '{{', not {text[start]!r}")
    items: list[Any] = []
    i = start + 1
    if text[i] == "}":
        return items, i + 1
    while True:
        if text[i] == "{":
            nested, i = _array_items(text, i, element)
            items.append(nested)
        elif text[i] == '"':
            chars, i = [], i + 1
            while text[i] != '"':
                if text[i] == "\\":
                    i += 1
                chars.append(text[i])
                i += 1
            items.append(element("".join(chars)))
            i += 1
        else:
            end = i
            while text[end] not in ",}":
                end += 1
            raw = text[i:end].strip()
            items.append(None if raw == "NULL" else element(raw))
            i = end
        if text[i] == "}":
            return items, i + 1
        i += 1  # the ',' between items
