"""MySQL's and MariaDB's side of the initial snapshot (`streams/cdc/snapshot.py`): readers in consistent-snapshot
transactions that all see the tables at one binlog position, tables read in primary-key order a chunk at a time and
converted exactly like binlog rows (`TableShape.row`), and cuts of a table at values of its first key column.

Where the snapshot stands in the binlog: MariaDB tells each consistent-snapshot transaction the binlog position it
sees (the `binlog_snapshot_file` / `binlog_snapshot_position` status variables), so readers started one after the
other agree on it unless a commit came between them (then they start again). When they keep disagreeing, or on MySQL
(which has no such variables), commits are blocked for the moment the readers start (MariaDB `BACKUP STAGE
BLOCK_COMMIT`, MySQL `FLUSH TABLES WITH READ LOCK`) and the binlog position is read under the block."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pymysql

from streams.cdc.binlog import TableShape, position_number
from streams.cdc.snapshot import Row, TablePart

LOCK_FREE_ATTEMPTS = 5


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True, kw_only=True)
class TablePlan(TablePart):
    shape: TableShape = field(repr=False)

    def chunk_query(self, after: Sequence[Any] | None, limit: int) -> tuple[str, list[Any]]:
        """The part's next rows after the key `after`. A key of several columns is compared column by column
        (`a > x OR (a = x AND b > y)`), which every server's range optimizer reads from the primary key."""
        conditions: list[str] = []
        parameters: list[Any] = []
        if after is not None:
            text, values = key_after(self.key, after)
            conditions.append(text)
            parameters.extend(values)
        for bound, operator in ((self.low, ">="), (self.high, "<")):
            if bound is not None:
                conditions.append(f"{quote(self.key[0])} {operator} %s")
                parameters.append(bound)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        columns = ", ".join(map(quote, self.shape.columns))
        order = ", ".join(map(quote, self.key))
        return f"SELECT {columns} FROM {quote(self.table)}{where} ORDER BY {order} LIMIT {int(limit)}", parameters


def key_after(key: Sequence[str], after: Sequence[Any]) -> tuple[str, list[Any]]:
    """`(k1, k2, …) > (v1, v2, …)` spelt out column by column."""
    first = quote(key[0])
    if len(key) == 1:
        return f"{first} > %s", [after[0]]
    rest, values = key_after(key[1:], after[1:])
    return f"({first} > %s OR ({first} = %s AND {rest}))", [after[0], after[0], *values]


@dataclass(frozen=True)
class BinlogPosition:
    """Where a consistent snapshot stands in the binlog: every transaction before it is in the snapshot, none
    after. `gtid` as the server writes its GTID state there (MariaDB `0-1-42,1-2-7`; MySQL a UUID set such as
    `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42`), or None when the server keeps no GTIDs."""

    file: str
    pos: int
    gtid: str | None

    @property
    def number(self) -> int:
        return position_number(self.file, self.pos)

    def saved(self) -> dict[str, Any]:
        return {"file": self.file, "pos": self.pos, "gtid": self.gtid}

    def __str__(self) -> str:
        return f"binlog {self.file}:{self.pos}" + (f" (gtid {self.gtid})" if self.gtid else "")


def snapshot_status(rows: Sequence[tuple[Any, Any]]) -> tuple[str, int] | None:
    """MariaDB's `SHOW SESSION STATUS LIKE 'binlog_snapshot_%'` as (file, position); None where the server has no
    such variables (MySQL) or writes no binlog."""
    values = {str(name).lower(): value for name, value in rows}
    file, pos = values.get("binlog_snapshot_file"), values.get("binlog_snapshot_position")
    if not file or pos in (None, ""):
        return None
    return str(file), int(pos)


def binlog_status(row: Sequence[Any] | None) -> BinlogPosition | None:
    """A `SHOW BINARY LOG STATUS` / `SHOW MASTER STATUS` row (File, Position, Binlog_Do_DB, Binlog_Ignore_DB and,
    on MySQL, Executed_Gtid_Set, whose UUID sets the server separates with newlines) as a position."""
    if row is None:
        return None
    gtid = "".join(str(row[4]).split()) if len(row) > 4 and row[4] else None
    return BinlogPosition(str(row[0]), int(row[1]), gtid)


def is_mariadb(version: str) -> bool:
    return "mariadb" in version.lower()


def commit_block(mariadb: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Statements that block commits (and release them again) while the readers start their snapshots."""
    if mariadb:
        return ("BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"), ("BACKUP STAGE END",)
    return ("FLUSH TABLES WITH READ LOCK",), ("UNLOCK TABLES",)


class MysqlChunkReader:
    """A connection of its own that reads in a consistent-snapshot, read-only transaction, with TIMESTAMPs in UTC
    as the binlog gives them."""

    def __init__(self, settings: dict[str, Any], schema: str) -> None:
        self.connection = pymysql.connect(**settings, database=schema, autocommit=True,
                                          init_command="SET time_zone = '+00:00'")

    def start_snapshot(self) -> tuple[str, int] | None:
        """Start the transaction; the binlog position it sees, where the server says (MariaDB)."""
        with self.connection.cursor() as cursor:
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            cursor.execute("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
            return snapshot_status(cursor.fetchall())

    def read(self, part: TablePlan, after: list[Any] | None, limit: int) -> tuple[list[Row], list[Any]]:
        query, parameters = part.chunk_query(after, limit)
        with self.connection.cursor() as cursor:
            cursor.execute(query, parameters)
            values = cursor.fetchall()
        columns, shape = part.shape.columns, part.shape
        rows = [shape.row(dict(zip(columns, row, strict=True))) for row in values]
        last = [values[-1][columns.index(k)] for k in part.key] if values else []
        return rows, last

    def cut(self, plan: TablePlan, parts: int) -> list[Any]:
        """Values of the first key column at every 1/parts of the table's rows, in the snapshot."""
        if parts < 2:
            return []
        first = quote(plan.key[0])
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {quote(plan.table)}")
            (count,) = cursor.fetchone()
            bounds = []
            for i in range(1, parts):
                cursor.execute(f"SELECT {first} FROM {quote(plan.table)} ORDER BY {first} LIMIT 1 OFFSET %s",
                               (count * i // parts,))
                row = cursor.fetchone()
                if row is not None and row[0] is not None:
                    bounds.append(row[0])
        return list(dict.fromkeys(bounds))  # a value that repeats cuts once

    def rollback(self) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute("ROLLBACK")

    def cancel(self) -> None:
        """A chunk query is short; the reader stops after it (pymysql cannot interrupt one from another thread)."""

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()


def open_readers(settings: dict[str, Any], schema: str, count: int, log: Any) -> tuple[list[MysqlChunkReader],
                                                                                       BinlogPosition]:
    """`count` readers inside consistent snapshots of one binlog position, and that position."""
    readers: list[MysqlChunkReader] = []
    try:
        for _ in range(count):
            readers.append(MysqlChunkReader(settings, schema))
        with readers[0].connection.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            mariadb = is_mariadb(str(cursor.fetchone()[0]))
        if mariadb:
            for _ in range(LOCK_FREE_ATTEMPTS):
                seen = {reader.start_snapshot() for reader in readers}
                if len(seen) == 1 and None not in seen:
                    file, pos = seen.pop()  # type: ignore[misc]
                    return readers, BinlogPosition(file, pos, _gtid_at(readers[0], file, pos))
                for reader in readers:
                    reader.rollback()
            log.info("commits kept coming between the snapshot readers' starts: blocking commits while they start")
        return readers, _open_with_commits_blocked(settings, readers, mariadb)
    except BaseException:
        for reader in readers:
            reader.close()
        raise


def _open_with_commits_blocked(settings: dict[str, Any], readers: list[MysqlChunkReader],
                               mariadb: bool) -> BinlogPosition:
    block, release = commit_block(mariadb)
    with contextlib.closing(pymysql.connect(**settings, autocommit=True)) as locker, locker.cursor() as cursor:
        for statement in block:
            cursor.execute(statement)
        try:
            for reader in readers:
                reader.start_snapshot()
            position = None
            for statement in ("SHOW BINARY LOG STATUS", "SHOW MASTER STATUS"):  # MySQL 8.4 dropped the second
                with contextlib.suppress(pymysql.err.ProgrammingError):
                    cursor.execute(statement)
                    position = binlog_status(cursor.fetchone())
                    break
        finally:
            for statement in release:
                cursor.execute(statement)
    if position is None:
        raise pymysql.err.OperationalError(1381, "the server writes no binlog")
    if mariadb:
        return BinlogPosition(position.file, position.pos, _gtid_at(readers[0], position.file, position.pos))
    return position


def _gtid_at(reader: MysqlChunkReader, file: str, pos: int) -> str | None:
    """MariaDB's GTID state at a binlog position (its `BINLOG_GTID_POS`)."""
    with reader.connection.cursor() as cursor:
        cursor.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
        row = cursor.fetchone()
    return str(row[0]) if row and row[0] else None
