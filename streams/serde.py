"""Record serialization, in one place: orjson for bytes on the wire, canonical JSON for checksums."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel

_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def to_plain(value: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """A model as the JSON-ready dict the stores see (`_id`, ISO dates, `Z` timestamps)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    return value


def dumps(value: Any) -> bytes:
    if isinstance(value, BaseModel):
        return value.model_dump_json(by_alias=True).encode()
    return orjson.dumps(value, default=_exact, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def _exact(value: Any) -> Any:
    """What JSON has no type for, written without loss: decimals as their digits, bytes as base64."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    return orjson.loads(data)


def canonical_json(value: BaseModel | dict[str, Any]) -> bytes:
    """Key-sorted JSON: equal content gives equal bytes, whatever the key order it arrived in."""
    return orjson.dumps(to_plain(value), option=_CANONICAL)


def content_checksum(documents: Iterable[BaseModel | dict[str, Any]]) -> str:
    """Order-independent SHA-256 over the canonical JSON of the business fields of many documents.

    Bookkeeping fields (names starting with `_`, other than `_id`) are not business content.
    """
    digests = sorted(hashlib.sha256(canonical_json(business_fields(doc))).digest() for doc in documents)
    total = hashlib.sha256()
    for digest in digests:
        total.update(digest)
    return total.hexdigest()


def business_fields(value: BaseModel | dict[str, Any]) -> dict[str, Any]:
    plain = to_plain(value)
    return {key: item for key, item in plain.items() if key == "_id" or not key.startswith("_")}
