"""PostgreSQL's pgoutput logical replication protocol, version 1: binary messages decoded into typed events.

Column values stay in PostgreSQL's text form here (`bytes`), or are `None` (SQL NULL) or `UNCHANGED` (a TOASTed
value the update did not touch, which the server does not send); `streams.cdc.pgtypes` turns text into Python values.
Reference: https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Final, Literal

POSTGRES_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)

_INT8 = struct.Struct("!b")
_INT16 = struct.Struct("!h")
_INT32 = struct.Struct("!i")
_UINT32 = struct.Struct("!I")
_INT64 = struct.Struct("!q")
_UINT64 = struct.Struct("!Q")
_BEGIN = struct.Struct("!QqI")
_COMMIT = struct.Struct("!bQQq")
_COLUMN_TAIL = struct.Struct("!Ii")


class PgOutputError(ValueError):
    """A message that is not valid pgoutput v1 (truncated, unknown kind, or a relation never described)."""


class _Unchanged(Enum):
    UNCHANGED = "unchanged"

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged.UNCHANGED
"""A TOASTed column an UPDATE left as it was: pgoutput sends a marker ('u'), not the value."""

ColumnValue = bytes | None | _Unchanged
TupleData = tuple[ColumnValue, ...]
ReplicaIdentity = Literal["d", "n", "f", "i"]  # default (primary key), nothing, full, index


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    type_modifier: int
    in_identity: bool  # part of the replica identity: the primary key, the index, or every column under FULL


@dataclass(frozen=True, slots=True)
class Relation:
    relation_id: int
    namespace: str
    name: str
    replica_identity: ReplicaIdentity
    columns: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int  # the LSN of the transaction's commit record
    commit_ts: datetime
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int  # where the next transaction starts: what the client confirms once the transaction is durable
    commit_ts: datetime


@dataclass(frozen=True, slots=True)
class Origin:
    commit_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class TypeInfo:
    type_oid: int
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    relation_id: int
    new: TupleData


@dataclass(frozen=True, slots=True)
class Update:
    relation_id: int
    new: TupleData
    old: TupleData | None = None  # present when the identity changed ('K') or under REPLICA IDENTITY FULL ('O')
    old_is_key_only: bool = False  # 'K': only identity columns carry values, the others are NULL placeholders


@dataclass(frozen=True, slots=True)
class Delete:
    relation_id: int
    old: TupleData
    old_is_key_only: bool


@dataclass(frozen=True, slots=True)
class Truncate:
    relation_ids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message = Begin | Commit | Origin | Relation | TypeInfo | Insert | Update | Delete | Truncate | LogicalMessage


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL writes it (`16/B374D848`)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def decode(payload: bytes | bytearray | memoryview) -> Message:
    """One pgoutput v1 message (the payload of an XLogData frame)."""
    reader = _Reader(bytes(payload))
    try:
        kind = reader.byte()
        decoder = _DECODERS.get(kind)
        if decoder is None:
            raise PgOutputError(f"unknown pgoutput message kind {chr(kind)!r}")
        message: Message = decoder(reader)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise PgOutputError(f"malformed pgoutput message {bytes(payload[:1])!r}: {exc}") from None
    if reader.offset != len(reader.data):
        raise PgOutputError(f"{len(reader.data) - reader.offset} trailing bytes after a {chr(kind)!r} message")
    return message


class _Reader:
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def unpack(self, layout: struct.Struct) -> tuple[int, ...]:
        values = layout.unpack_from(self.data, self.offset)
        self.offset += layout.size
        return values

    def byte(self) -> int:
        value = self.data[self.offset]
        self.offset += 1
        return value

    def int8(self) -> int:
        return self.unpack(_INT8)[0]

    def int16(self) -> int:
        return self.unpack(_INT16)[0]

    def int32(self) -> int:
        return self.unpack(_INT32)[0]

    def uint32(self) -> int:
        return self.unpack(_UINT32)[0]

    def uint64(self) -> int:
        return self.unpack(_UINT64)[0]

    def timestamp(self) -> datetime:
        return POSTGRES_EPOCH + timedelta(microseconds=self.unpack(_INT64)[0])

    def string(self) -> str:
        end = self.data.index(0, self.offset)
        value = self.data[self.offset:end].decode()
        self.offset = end + 1
        return value

    def raw(self, length: int) -> bytes:
        if length < 0 or self.offset + length > len(self.data):
            raise PgOutputError(f"a value of {length} bytes runs past the end of the message")
        value = self.data[self.offset:self.offset + length]
        self.offset += length
        return value

    def tuple_data(self) -> TupleData:
        count = self.int16()
        values: list[ColumnValue] = []
        for _ in range(count):
            kind = self.byte()
            if kind == 0x74:  # 't': text
                values.append(self.raw(self.int32()))
            elif kind == 0x6E:  # 'n': NULL
                values.append(None)
            elif kind == 0x75:  # 'u': unchanged TOASTed value, not sent
                values.append(UNCHANGED)
            else:  # 'b' (binary) only exists when the client asks for binary mode, which protocol v1 cannot
                raise PgOutputError(f"unsupported tuple value kind {chr(kind)!r}")
        return tuple(values)


def _begin(r: _Reader) -> Begin:
    final_lsn, micros, xid = r.unpack(_BEGIN)
    return Begin(final_lsn, POSTGRES_EPOCH + timedelta(microseconds=micros), xid)


def _commit(r: _Reader) -> Commit:
    flags, commit_lsn, end_lsn, micros = r.unpack(_COMMIT)
    return Commit(flags, commit_lsn, end_lsn, POSTGRES_EPOCH + timedelta(microseconds=micros))


def _origin(r: _Reader) -> Origin:
    return Origin(r.uint64(), r.string())


def _relation(r: _Reader) -> Relation:
    relation_id, namespace, name = r.uint32(), r.string(), r.string()
    identity = chr(r.byte())
    if identity not in ("d", "n", "f", "i"):
        raise PgOutputError(f"unknown replica identity {identity!r}")
    columns = []
    for _ in range(r.int16()):
        flags, column_name = r.int8(), r.string()
        type_oid, modifier = r.unpack(_COLUMN_TAIL)
        columns.append(Column(column_name, type_oid, modifier, bool(flags & 1)))
    return Relation(relation_id, namespace or "pg_catalog", name, identity, tuple(columns))  # type: ignore[arg-type]


def _type(r: _Reader) -> TypeInfo:
    return TypeInfo(r.uint32(), r.string(), r.string())


def _insert(r: _Reader) -> Insert:
    relation_id = r.uint32()
    _expect(r, b"N")
    return Insert(relation_id, r.tuple_data())


def _update(r: _Reader) -> Update:
    relation_id = r.uint32()
    marker = r.byte()
    old, key_only = None, False
    if marker in (0x4B, 0x4F):  # 'K' identity columns only, 'O' the whole old row
        old, key_only = r.tuple_data(), marker == 0x4B
        marker = r.byte()
    if marker != 0x4E:
        raise PgOutputError(f"an update's new tuple starts with {chr(marker)!r}, not 'N'")
    return Update(relation_id, r.tuple_data(), old, key_only)


def _delete(r: _Reader) -> Delete:
    relation_id = r.uint32()
    marker = r.byte()
    if marker not in (0x4B, 0x4F):
        raise PgOutputError(f"a delete's old tuple starts with {chr(marker)!r}, not 'K' or 'O'")
    return Delete(relation_id, r.tuple_data(), marker == 0x4B)


def _truncate(r: _Reader) -> Truncate:
    count, options = r.int32(), r.int8()
    return Truncate(tuple(r.uint32() for _ in range(count)), bool(options & 1), bool(options & 2))


def _message(r: _Reader) -> LogicalMessage:
    flags, lsn, prefix = r.int8(), r.uint64(), r.string()
    return LogicalMessage(bool(flags & 1), lsn, prefix, r.raw(r.int32()))


def _expect(r: _Reader, marker: bytes) -> None:
    found = r.byte()
    if found != marker[0]:
        raise PgOutputError(f"expected {marker.decode()!r}, found {chr(found)!r}")


_DECODERS: dict[int, Callable[[_Reader], Message]] = {
    ord("B"): _begin,
    ord("C"): _commit,
    ord("O"): _origin,
    ord("R"): _relation,
    ord("Y"): _type,
    ord("I"): _insert,
    ord("U"): _update,
    ord("D"): _delete,
    ord("T"): _truncate,
    ord("M"): _message,
}
