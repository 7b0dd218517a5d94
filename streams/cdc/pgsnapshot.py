"""PostgreSQL's side of the initial snapshot (`streams/cdc/snapshot.py`): readers that import a slot's exported
snapshot, tables read in primary-key order a chunk at a time as text converted exactly like streamed changes
(`streams.cdc.pgtypes`), and cuts of a table at values of its first key column."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import psycopg2  # type: ignore[import-untyped]
from psycopg2 import sql

from streams.cdc.pgslot import TableName, primary_key
from streams.cdc.pgtypes import Converter, converter
from streams.cdc.snapshot import Row, TablePart
from streams.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class TablePlan(TablePart):
    relation: TableName
    columns: tuple[str, ...]
    converters: tuple[Converter, ...] = field(repr=False)

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
            columns, self.relation.identifier(), where, key, sql.Literal(limit))
        return query, parameters


def read_chunk(cursor: Any, plan: TablePlan, after: list[str] | None, limit: int) -> tuple[list[Row], list[str]]:
    """Up to `limit` rows of the part after the key `after`, and the key of the last one, as text."""
    query, parameters = plan.chunk_query(after, limit)
    cursor.execute(query, parameters)
    texts = cursor.fetchall()
    columns, converters = plan.columns, plan.converters
    rows = [{name: None if text is None else convert(text)
             for name, convert, text in zip(columns, converters, values, strict=True)} for values in texts]
    last = [texts[-1][columns.index(k)] for k in plan.key] if texts else []
    return rows, last


def part_bounds(cursor: Any, plan: TablePlan, parts: int) -> list[str]:
    """Values of the table's first key column that cut it into `parts` parts of about as many rows (fewer when
    the column has fewer distinct values), read in the same snapshot as the rows."""
    if parts < 2:
        return []
    fractions = [i / parts for i in range(1, parts)]
    cursor.execute(sql.SQL("SELECT (percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY {}))::text[] FROM {}").format(
        sql.Identifier(plan.key[0]), plan.relation.identifier()), (fractions,))
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
        plans.append(TablePlan(table=str(table), key=key, estimated_rows=max(0, int(rows[0][2])) if rows else 0,
                               relation=table, columns=tuple(r[0] for r in rows),
                               converters=tuple(converter(r[1]) for r in rows)))
    return plans


class PgChunkReader:
    """A connection that imported the exported snapshot `snapshot_name` (before its exporter runs another
    command), read-only, in one REPEATABLE READ transaction."""

    def __init__(self, connect_args: dict[str, Any], snapshot_name: str) -> None:
        self.connection = psycopg2.connect(**connect_args, application_name="tuneflow-cdc-snapshot")
        self.connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with self.connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION SNAPSHOT %s", (snapshot_name,))

    def read(self, part: TablePlan, after: list[str] | None, limit: int) -> tuple[list[Row], list[str]]:
        with self.connection.cursor() as cursor:
            return read_chunk(cursor, part, after, limit)

    def cut(self, plan: TablePlan, parts: int) -> list[str]:
        with self.connection.cursor() as cursor:
            return part_bounds(cursor, plan, parts)

    def cancel(self) -> None:
        with contextlib.suppress(psycopg2.Error):
            self.connection.cancel()

    def close(self) -> None:
        with contextlib.suppress(psycopg2.Error):
            self.connection.close()
