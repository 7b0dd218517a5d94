"""MySQL / MariaDB row binlog events → row changes: one per inserted, updated, deleted row or truncated table.

The events come from `mysql-replication` (`streams/cdc/mysql.py` turns its classes into the plain events below, so
this module is tested without a server). What a change carries:
- `op`: `c` insert, `u` update, `d` delete, `t` truncate (one per `TRUNCATE` statement of a followed table; `key`,
  `before`, `after` null). An update that changes the primary key is a `d` of the old key and a `c` of the new one.
- `key`: the primary-key columns; `before`: the whole old row (update, delete); `after`: the whole new row
  (`binlog_row_image=FULL`).
- Values by the column's type as the schema declares it: `TINYINT(1)` a boolean, JSON columns as JSON (MariaDB keeps
  them as text, MySQL in binary: both come out the same), DECIMAL a `Decimal` (a string of its digits on the wire),
  DATETIME/TIMESTAMP exact to the microsecond (UTC, `Z`), DATE ISO, text as the server stored it (4-byte UTF-8
  included), binary strings and BLOBs as bytes (base64 on the wire), TIME as `[-]HH:MM:SS[.ffffff]`, SET as a
  sorted list, ENUM as its text.
- `version` (header `tf-version`): `file sequence × 2^32 + position` of the end of the transaction's first event (its
  GTID event, or its `BEGIN` when the server writes no GTIDs). The binlog holds each transaction whole and in commit
  order, so a later transaction starts after an earlier one ends: the number grows with the commit order, is known
  before the transaction's rows arrive, and is comparable across every table of the server. (A GTID sequence is
  not: MariaDB numbers each replication domain on its own, MySQL each server UUID.) It is the same number each time
  the transaction is read, so a change read twice carries the same version.
- Each change has its transaction's id (its GTID, else `file:position`), its GTID, its timestamp (seconds, as the
  binlog records it) and its place in it (`seq` from 1, `last` on the transaction's last change).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from streams.cdc.origin import is_origin_table
from streams.cdc.transactions import HeldBack

Op = Literal["c", "u", "d", "t"]
Row = dict[str, Any]
POSITION_BITS = 32  # binlog files end before 4 GiB (max_binlog_size ≤ 1 GiB)


class BinlogError(Exception):
    """The binlog says something this reader cannot follow."""


def binlog_sequence(file: str) -> int:
    """The sequence number of a binlog file: `binlog.000042` → 42."""
    _, _, suffix = file.rpartition(".")
    if not suffix.isdigit():
        raise BinlogError(f"binlog file name {file!r} does not end in a sequence number")
    return int(suffix)


def position_number(file: str, pos: int) -> int:
    """A binlog position as one number that orders like the binlog: `file sequence × 2^32 + position`."""
    if not 0 <= pos < 1 << POSITION_BITS:
        raise BinlogError(f"binlog position {pos} of {file} is outside 0 … 2^32")
    return binlog_sequence(file) << POSITION_BITS | pos


# -- the events this module reads ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TxBegin:
    """A transaction starts: its GTID event (or its BEGIN when there are no GTIDs); `pos` is where that event ends."""

    file: str
    pos: int
    gtid: str | None
    timestamp: int


@dataclass(frozen=True, slots=True)
class RowsEvent:
    """Rows of one table changed: `rows` are the after images (insert), before images (delete) or (before, after)
    pairs (update), as the reader decoded them."""

    kind: Literal["insert", "update", "delete"]
    schema: str
    table: str
    rows: list[Any]


@dataclass(frozen=True, slots=True)
class TxCommit:
    """The transaction's XID (or COMMIT) event; `pos` is where it ends, the position to resume from after it."""

    file: str
    pos: int


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement logged as text outside a row transaction: DDL, `TRUNCATE`; ends where `pos` says."""

    file: str
    pos: int
    schema: str
    query: str
    timestamp: int = 0


BinlogEvent = TxBegin | RowsEvent | TxCommit | Statement


# -- what the tables are ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TableShape:
    """A followed table as the live schema declares it: its primary key and the columns that need a type the binlog
    does not carry (`TINYINT(1)` booleans: the binlog only says TINY; JSON: MariaDB logs it as text)."""

    name: str
    key: tuple[str, ...]
    booleans: frozenset[str] = frozenset()
    json: frozenset[str] = frozenset()
    times: frozenset[str] = frozenset()  # TIME: a duration, written as MySQL writes it
    sets: frozenset[str] = frozenset()  # SET: the members, sorted
    columns: tuple[str, ...] = ()  # every column, in the table's order

    def row(self, values: Mapping[str, Any]) -> Row:
        row = dict(values)
        for name in self.times:
            value = row.get(name)
            if isinstance(value, timedelta):
                row[name] = time_text(value)
        for name in self.sets:
            value = row.get(name)
            if isinstance(value, set | frozenset):
                row[name] = sorted(value)
            elif isinstance(value, str):  # as a query returns it (the snapshot): the members, comma-separated
                row[name] = sorted(value.split(",")) if value else []
        for name in self.booleans:
            value = row.get(name)
            if value is not None:
                row[name] = bool(value)
        for name in self.json:
            value = row.get(name)
            if value is not None:
                row[name] = json_value(value)
        return row

    def key_of(self, row: Row) -> Row:
        return {name: row.get(name) for name in self.key}


def time_text(value: timedelta) -> str:
    """A TIME value as MySQL writes it: `[-]HH:MM:SS[.ffffff]`, hours beyond 24 included."""
    micros = abs(value // timedelta(microseconds=1))
    seconds, fraction = divmod(micros, 1_000_000)
    text = f"{'-' if value < timedelta(0) else ''}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{text}.{fraction:06d}" if fraction else text


def json_value(value: Any) -> Any:
    """A JSON column's value as JSON data: MariaDB's text parsed, MySQL's decoded binary JSON with text keys."""
    if isinstance(value, str | bytes | bytearray):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:  # not JSON after all (a MariaDB LONGTEXT without its check): the text as it is
            return value.decode() if isinstance(value, bytes | bytearray) else value
    if isinstance(value, dict):
        return {(k.decode() if isinstance(k, bytes) else k): json_value_inner(v) for k, v in value.items()}
    return json_value_inner(value)


def json_value_inner(value: Any) -> Any:
    if isinstance(value, dict):
        return json_value(value)
    if isinstance(value, list):
        return [json_value_inner(v) for v in value]
    if isinstance(value, bytes):
        return value.decode()
    return value


# -- changes ------------------------------------------------------------------------------------------------------

@dataclass(slots=True)
class Change:
    op: Op
    table: str
    key: Row | None
    before: Row | None
    after: Row | None
    version: int
    file: str
    pos: int
    gtid: str | None
    txid: str
    timestamp: int
    unchanged: tuple[str, ...] = ()
    seq: int = 0
    last: bool = False

    @property
    def source(self) -> dict[str, Any]:
        return {"file": self.file, "pos": self.pos, "gtid": self.gtid, "txid": self.txid,
                "commit_ts": datetime.fromtimestamp(self.timestamp, UTC)}


@dataclass(frozen=True, slots=True)
class TransactionEnd:
    """Every change of the transaction has been handed out; resuming from (`file`, `pos`) skips it."""

    file: str
    pos: int
    gtid: str | None
    changes: int

    @property
    def number(self) -> int:
        return position_number(self.file, self.pos)


_TRUNCATE = re.compile(r"^\s*TRUNCATE\s+(?:TABLE\s+)?(?P<name>(?:`(?:[^`]|``)+`|[\w$]+)"
                       r"(?:\s*\.\s*(?:`(?:[^`]|``)+`|[\w$]+))?)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_COMMENTS = re.compile(r"/\*.*?\*/|#[^\n]*|--\s[^\n]*", re.DOTALL)


def truncated_table(query: str, default_schema: str) -> tuple[str, str] | None:
    """(schema, table) a `TRUNCATE [TABLE] [schema.]table` statement empties, or None for any other statement."""
    match = _TRUNCATE.match(_COMMENTS.sub(" ", query))
    if match is None:
        return None
    parts = [_unquote(p) for p in re.findall(r"`(?:[^`]|``)+`|[\w$]+", match["name"])]
    return (default_schema, parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


@dataclass
class ChangeAssembler:
    """Feed it events in binlog order; it returns changes and transaction ends, holding back one change until it
    knows whether it is its transaction's last. Only the `schema`'s tables in `tables` are followed; `on_ddl` hears
    of any other statement on the schema (the live schema may have changed)."""

    schema: str
    tables: dict[str, TableShape]
    on_ddl: Callable[[Statement], None] = lambda statement: None
    _tx: TxBegin | None = None
    _own: TxBegin | None = None  # the transaction marked as the pipeline's own
    _numbering: HeldBack[Change] = field(default_factory=HeldBack)

    @property
    def mid_transaction(self) -> bool:
        return self._tx is not None or self._numbering.holding

    def feed(self, event: BinlogEvent) -> list[Change | TransactionEnd]:
        if isinstance(event, TxBegin):
            if self._tx is not None:  # the server lost the end of the last one (a crash): it never committed
                self._numbering.drop()
            self._tx = event
            return []
        if isinstance(event, RowsEvent):
            return [] if self._own_transaction(event) else self._hold(self._rows(event))
        if isinstance(event, TxCommit):
            return self._end(event.file, event.pos)
        return self._statement(event)

    def _own_transaction(self, event: RowsEvent) -> bool:
        """Whether the transaction is the pipeline's own write (streams/cdc/origin.py): its row changes are dropped."""
        if self._tx is not None and is_origin_table(event.schema, event.table, self.schema):
            self._own = self._tx
        return self._tx is not None and self._own is self._tx

    def _rows(self, event: RowsEvent) -> list[Change]:
        shape = self.tables.get(event.table) if event.schema == self.schema else None
        if shape is None:
            return []
        changes: list[Change] = []
        for row in event.rows:
            if event.kind == "insert":
                after = shape.row(row)
                changes.append(self._change("c", shape, shape.key_of(after), None, after))
            elif event.kind == "delete":
                before = shape.row(row)
                changes.append(self._change("d", shape, shape.key_of(before), before, None))
            else:
                before, after = shape.row(row[0]), shape.row(row[1])
                old_key, new_key = shape.key_of(before), shape.key_of(after)
                if old_key != new_key:
                    changes.append(self._change("d", shape, old_key, before, None))
                    changes.append(self._change("c", shape, new_key, None, after))
                else:
                    changes.append(self._change("u", shape, new_key, before, after))
        return changes

    def _statement(self, event: Statement) -> list[Change | TransactionEnd]:
        target = truncated_table(event.query, event.schema)
        if self._tx is None:  # no GTID event before it (a server without GTIDs): the statement starts its own
            self._tx = TxBegin(event.file, event.pos, None, event.timestamp)
        out: list[Change | TransactionEnd] = []
        if target is not None:
            schema, table = target
            shape = self.tables.get(table) if schema == self.schema else None
            if shape is not None:
                out = self._hold([self._change("t", shape, None, None, None)])
        elif event.schema == self.schema or self.schema in event.query:
            self.on_ddl(event)
        # DDL commits implicitly: the statement is its own transaction (or ends the one in progress)
        return out + self._end(event.file, event.pos)

    def _change(self, op: Op, shape: TableShape, key: Row | None, before: Row | None, after: Row | None) -> Change:
        begin = self._tx
        if begin is None:
            raise BinlogError(f"a change of table {shape.name} outside a transaction (the reader started mid-way)")
        txid = begin.gtid or f"{begin.file}:{begin.pos}"
        return Change(op, shape.name, key, before, after, position_number(begin.file, begin.pos), begin.file,
                      begin.pos, begin.gtid, txid, begin.timestamp)

    def _hold(self, changes: Iterable[Change]) -> list[Change | TransactionEnd]:
        out: list[Change | TransactionEnd] = []
        self._numbering.add(changes, out)
        return out

    def _end(self, file: str, pos: int) -> list[Change | TransactionEnd]:
        out: list[Change | TransactionEnd] = []
        count = self._numbering.end(out)
        begin, self._tx = self._tx, None
        out.append(TransactionEnd(file, pos, begin.gtid if begin else None, count))
        return out
