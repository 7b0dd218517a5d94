"""Decoded pgoutput messages → row changes: one per inserted, updated, deleted or truncated row or table.

What a change carries (the record `cdc-postgres` emits is this, as JSON):
- `op`: `c` insert, `u` update, `d` delete, `t` truncate (one per table, `key`/`before`/`after` null).
- `key`: the primary-key columns (the replica identity's columns when a table has no primary key).
- `before`: under REPLICA IDENTITY DEFAULT the key columns of the old row on a delete or a key-changing update,
  null on other updates; under FULL the whole old row on every update and delete.
- `after`: the new row. A TOASTed column the update did not touch is not sent by PostgreSQL: when the old row is
  known (FULL) its value is copied from `before`; otherwise the column is left out of `after` and named in
  `unchanged` — it kept the value it had, so a consumer merges `after` over the row it holds. Never a made-up null.
- An update that changes the primary key becomes a delete of the old key and an insert of the new one.
- Each change has its transaction's id, commit LSN and time, and its place in it (`seq` from 1, `last`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from streams.cdc.origin import is_origin_message
from streams.cdc.pgoutput import (
    UNCHANGED,
    Begin,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Message,
    PgOutputError,
    Relation,
    Truncate,
    TupleData,
    Update,
)
from streams.cdc.pgtypes import Converter, converter
from streams.cdc.transactions import HeldBack

Op = Literal["c", "u", "d", "t", "r"]  # r: a row read by the initial snapshot
Row = dict[str, Any]
KeyResolver = Callable[[Relation], Sequence[str]]


@dataclass(slots=True)
class Change:
    op: Op
    table: str
    key: Row | None
    before: Row | None
    after: Row | None
    commit_lsn: int
    xid: int
    commit_ts: datetime
    unchanged: tuple[str, ...] = ()
    seq: int = 0
    last: bool = False


@dataclass(frozen=True, slots=True)
class TransactionEnd:
    """Every change of the transaction has been handed out; confirming `end_lsn` skips it on a restart."""

    xid: int
    end_lsn: int
    changes: int


@dataclass(slots=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    converters: tuple[Converter, ...]
    identity: tuple[int, ...]  # positions of the replica identity's columns
    key: tuple[int, ...]  # positions of the primary key's columns

    def row(self, values: TupleData, only: Sequence[int] | None = None) -> tuple[Row, tuple[str, ...]]:
        """Values by column name, and the names of unchanged TOASTed columns (left out of the row)."""
        row: Row = {}
        unchanged: list[str] = []
        for i in range(len(values)) if only is None else only:
            value = values[i]
            if value is UNCHANGED:
                unchanged.append(self.columns[i])
            else:
                row[self.columns[i]] = None if value is None else self.converters[i](value.decode())
        return row, tuple(unchanged)

    def key_of(self, row: Row) -> Row:
        return {self.columns[i]: row.get(self.columns[i]) for i in self.key}


@dataclass
class ChangeAssembler:
    """Feed it messages in stream order; it returns changes and transaction ends, holding back one change until it
    knows whether it is its transaction's last."""

    primary_key: KeyResolver
    tables: dict[int, _Table] = field(default_factory=dict)
    _tx: Begin | None = None
    _own: Begin | None = None  # the transaction marked as the pipeline's own (streams/cdc/origin.py)
    _numbering: HeldBack[Change] = field(default_factory=HeldBack)

    @property
    def mid_transaction(self) -> bool:
        return self._tx is not None or self._numbering.holding

    def feed(self, message: Message) -> list[Change | TransactionEnd]:
        if isinstance(message, Begin):
            self._tx = message
            return []
        if isinstance(message, Relation):
            self.tables[message.relation_id] = self._describe(message)
            return []
        if isinstance(message, Commit):
            return self._commit(message)
        if isinstance(message, Insert | Update | Delete | Truncate):
            return [] if self._own_transaction() else self._hold(self._changes(message))
        if isinstance(message, LogicalMessage):
            self._mark_origin(message)
        return []  # Origin, Type, logical messages: nothing to emit

    def _mark_origin(self, message: LogicalMessage) -> None:
        if self._tx is not None and is_origin_message(message.prefix, message.transactional):
            self._own = self._tx

    def _own_transaction(self) -> bool:
        return self._tx is not None and self._own is self._tx

    def _describe(self, relation: Relation) -> _Table:
        names = tuple(c.name for c in relation.columns)
        identity = tuple(i for i, c in enumerate(relation.columns) if c.in_identity)
        wanted = list(self.primary_key(relation))
        key = tuple(names.index(n) for n in wanted) if wanted else identity or tuple(range(len(names)))
        table = relation.name if relation.namespace == "public" else f"{relation.namespace}.{relation.name}"
        return _Table(table, names, tuple(converter(c.type_oid) for c in relation.columns), identity, key)

    def _table(self, relation_id: int) -> _Table:
        table = self.tables.get(relation_id)
        if table is None:
            raise PgOutputError(f"a change of relation {relation_id}, which no Relation message described")
        return table

    def _changes(self, message: Insert | Update | Delete | Truncate) -> list[Change]:
        begin = self._tx
        if begin is None:
            raise PgOutputError(f"a {type(message).__name__} outside a transaction")
        lsn, xid, ts = begin.final_lsn, begin.xid, begin.commit_ts
        if isinstance(message, Truncate):
            return [Change("t", self._table(r).name, None, None, None, lsn, xid, ts) for r in message.relation_ids]
        table = self._table(message.relation_id)
        if isinstance(message, Insert):
            after, unchanged = table.row(message.new)
            return [Change("c", table.name, table.key_of(after), None, after, lsn, xid, ts, unchanged)]
        if isinstance(message, Delete):
            old = self._old(table, message.old, message.old_is_key_only)
            return [Change("d", table.name, table.key_of(old), old, None, lsn, xid, ts)]
        before = None if message.old is None else self._old(table, message.old, message.old_is_key_only)
        after, unchanged = table.row(message.new)
        if unchanged and before is not None and not message.old_is_key_only:
            after.update({name: before[name] for name in unchanged if name in before})
            unchanged = tuple(name for name in unchanged if name not in before)
        new_key = table.key_of(after)
        if before is not None:
            old_key = table.key_of(before)
            if old_key != new_key:
                return [Change("d", table.name, old_key, before, None, lsn, xid, ts),
                        Change("c", table.name, new_key, None, after, lsn, xid, ts, unchanged)]
        return [Change("u", table.name, new_key, before, after, lsn, xid, ts, unchanged)]

    @staticmethod
    def _old(table: _Table, values: TupleData, key_only: bool) -> Row:
        row, _ = table.row(values, table.identity if key_only else None)
        return row

    def _hold(self, changes: list[Change]) -> list[Change | TransactionEnd]:
        out: list[Change | TransactionEnd] = []
        self._numbering.add(changes, out)
        return out

    def _commit(self, commit: Commit) -> list[Change | TransactionEnd]:
        out: list[Change | TransactionEnd] = []
        count = self._numbering.end(out)
        begin, self._tx = self._tx, None
        out.append(TransactionEnd(begin.xid if begin else 0, commit.end_lsn, count))
        return out
