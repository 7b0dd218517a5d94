"""The initial snapshot of PostgreSQL tables: read inside an imported (exported-by-a-slot) snapshot, in primary-key
order a chunk at a time, as text converted exactly like streamed changes (`streams.cdc.pgtypes`). A table may be cut
into parts, ranges of its first key column, which readers on their own connections read side by side."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from psycopg2 import sql  # type: ignore[import-untyped]

from streams.cdc.pgslot import TableName, primary_key
from streams.cdc.pgtypes import Converter, converter
from streams.errors import ConfigError

Row = dict[str, Any]


@dataclass(frozen=True)
class TablePlan:
    table: TableName
    columns: tuple[str, ...]
    converters: tuple[Converter, ...]
    key: tuple[str, ...]
    estimated_rows: int
    part: int | None = None  # a part of the table: its rows with low <= first key column < high
    low: str | None = None
    high: str | None = None

    @property
    def name(self) -> str:
        """What the snapshot's saved progress calls it: the table, or the table and its part."""
        return str(self.table) if self.part is None else f"{self.table}#{self.part}"

    def chunk_query(self, after: list[str] | None, limit: int) -> tuple[sql.Composable, list[Any]]:
        key = sql.SQL(", ").join(map(sql.Identifier, self.key))
        # Aliased, so that ORDER BY means the columns and not their text (an output name would win there).
        columns = sql.SQL(", ").join(sql.SQL("{}::text AS {}").format(sql.Identifier(c), sql.Identifier(f"_{i}"))
                                     for i, c in enumerate(self.columns))
        conditions: list[sql.Composable] = []
        parameters: list[Any] = []
        if after is not None:
            conditions.append(sql.SQL("({}) > ({})").format(key, sql.SQL(", ").join(sql.Placeholder() * len(after))))
            parameters.extend(after)
        for bound, operator in ((self.low, ">="), (self.high, "<")):
            if bound is not None:
                conditions.append(sql.SQL("{} {} %s").format(sql.Identifier(self.key[0]), sql.SQL(operator)))
                parameters.append(bound)
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
        query = sql.SQL("SELECT {} FROM {}{} ORDER BY {} LIMIT {}").format(
            columns, self.table.identifier(), where, key, sql.Literal(limit))
        return query, parameters

    def parts(self, bounds: list[str]) -> list[TablePlan]:
        """The table cut at `bounds` (values of its first key column, ascending): len(bounds) + 1 parts."""
        if not bounds:
            return [self]
        edges: list[str | None] = [None, *bounds, None]
        return [replace(self, part=i, low=edges[i], high=edges[i + 1]) for i in range(len(bounds) + 1)]


def part_bounds(cursor: Any, plan: TablePlan, parts: int) -> list[str]:
    """Values of the table's first key column that cut it into `parts` parts of about as many rows (fewer when
    the column has fewer distinct values), read in the same snapshot as the rows."""
    if parts < 2:
        return []
    fractions = [i / parts for i in range(1, parts)]
    cursor.execute(sql.SQL("SELECT (percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY {}))::text[] FROM {}").format(
        sql.Identifier(plan.key[0]), plan.table.identifier()), (fractions,))
    row = cursor.fetchone()
    bounds = [] if row is None or row[0] is None else row[0]
    return list(dict.fromkeys(b for b in bounds if b is not None))  # a value that repeats cuts once


def plan_tables(cursor: Any, tables: list[TableName]) -> list[TablePlan]:
    """Columns, types and primary key of each table; a table without a primary key cannot be read in key order."""
    plans = []
    for table in tables:
        cursor.execute("SELECT to_regclass(format('%%I.%%I', %s, %s))::oid", (table.schema, table.name))
        (relation_id,) = cursor.fetchone()
        cursor.execute("SELECT a.attname, a.atttypid, c.reltuples FROM pg_attribute a JOIN pg_class c "
                       "ON c.oid = a.attrelid WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped "
                       "ORDER BY a.attnum", (relation_id,))
        rows = cursor.fetchall()
        key = tuple(primary_key(cursor, relation_id))
        if not key:
            raise ConfigError(f"table {table} has no primary key: the initial snapshot reads tables in key order "
                              "(give it one, or leave it out of --tables, or use --snapshot=never)")
        plans.append(TablePlan(table, tuple(r[0] for r in rows), tuple(converter(r[1]) for r in rows), key,
                               max(0, int(rows[0][2])) if rows else 0))
    return plans


@dataclass
class SnapshotCursor:
    """Where the snapshot stands: the tables finished, and the last key read of the table in progress."""

    plans: list[TablePlan]
    finished: list[str]
    after: list[str] | None = None

    @classmethod
    def from_state(cls, plans: list[TablePlan], state: dict[str, Any] | None) -> SnapshotCursor:
        if not state:
            return cls(plans, [])
        return cls(plans, list(state.get("finished", [])), state.get("after"))

    def state(self) -> dict[str, Any]:
        return {"finished": list(self.finished), "after": self.after, "done": self.done}

    @property
    def current(self) -> TablePlan | None:
        return next((p for p in self.plans if p.name not in self.finished), None)

    @property
    def done(self) -> bool:
        return self.current is None

    def read_chunk(self, cursor: Any, limit: int) -> tuple[TablePlan, list[Row]] | None:
        """The next rows of the table in progress (and moves past them); None once every table is read."""
        while (plan := self.current) is not None:
            query, parameters = plan.chunk_query(self.after, limit)
            cursor.execute(query, parameters)
            texts = cursor.fetchall()
            if len(texts) < limit:
                self.finished.append(plan.name)
                self.after = None
            if texts:
                if len(texts) == limit:
                    positions = [plan.columns.index(k) for k in plan.key]
                    self.after = [texts[-1][i] for i in positions]
                rows = [{name: None if text is None else convert(text)
                         for name, convert, text in zip(plan.columns, plan.converters, values, strict=True)}
                        for values in texts]
                return plan, rows
        return None
