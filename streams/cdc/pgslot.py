"""The server side of PostgreSQL capture: tables checked against the live schema, the publication and the logical
replication slot created when absent, primary keys and the slot's retained WAL read from the catalogs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from streams.catalog.dburl import to_sqlalchemy_url
from streams.cdc.pgoutput import parse_lsn
from streams.errors import ConfigError

PLUGIN = "pgoutput"
_NAME = re.compile(r"[^a-z0-9_]+")


@dataclass(frozen=True, slots=True)
class TableName:
    schema: str
    name: str

    def identifier(self) -> sql.Composable:
        return sql.SQL(".").join([sql.Identifier(self.schema), sql.Identifier(self.name)])

    def __str__(self) -> str:
        return self.name if self.schema == "public" else f"{self.schema}.{self.name}"


def connect_args(url: str) -> dict[str, Any]:
    """psycopg2 keyword arguments for a user's postgresql:// URL (no password: libpq's PGPASSWORD or .pgpass)."""
    parsed = make_url(to_sqlalchemy_url(url))
    if not parsed.drivername.startswith("postgresql"):
        raise ConfigError(f"cdc-postgres reads PostgreSQL; {parsed.drivername.split('+')[0]}:// is not PostgreSQL")
    args: dict[str, Any] = parsed.translate_connect_args(username="user", database="dbname")
    args.update({k: v for k, v in parsed.query.items() if isinstance(v, str)})
    return args


def default_slot_name(*parts: str) -> str:
    """A slot or publication name from the stream and app: lower-case letters, digits and _, at most 63."""
    return _NAME.sub("_", "_".join(("tuneflow", *parts)).lower())[:63]


def resolve_tables(cursor: Any, wanted: Sequence[str]) -> list[TableName]:
    """Each `table` or `schema.table` as it exists (ordinary or partitioned tables); unknown names are a
    ConfigError that lists what exists, so a typo never reaches SQL."""
    cursor.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                   "AND n.nspname NOT LIKE 'pg_toast%'")
    existing = {TableName(schema, name) for schema, name in cursor.fetchall()}
    found: list[TableName] = []
    missing: list[TableName] = []
    for entry in wanted:
        schema, _, name = entry.strip().rpartition(".")
        table = TableName(schema or "public", name)
        (found if table in existing else missing).append(table)
    if missing:
        known = ", ".join(sorted(str(t) for t in existing)) or "none"
        raise ConfigError(f"no such table: {', '.join(str(t) for t in missing)} (tables here: {known})")
    return found


def ensure_publication(cursor: Any, publication: str, tables: Sequence[TableName]) -> list[TableName]:
    """Create the publication for `tables`, or add the ones an existing publication lacks; returns those added."""
    cursor.execute("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (publication,))
    published = {TableName(s, n) for s, n in cursor.fetchall()}
    cursor.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,))
    exists = cursor.fetchone() is not None
    missing = [t for t in tables if t not in published]
    if missing:
        names = sql.SQL(", ").join(t.identifier() for t in missing)
        statement = "ALTER PUBLICATION {} ADD TABLE {}" if exists else "CREATE PUBLICATION {} FOR TABLE {}"
        cursor.execute(sql.SQL(statement).format(sql.Identifier(publication), names))
    return missing


def slot_exists(cursor: Any, slot: str) -> bool:
    """Whether the slot exists; a slot of another plugin or database is a ConfigError: reusing it would read
    someone else's changes."""
    cursor.execute("SELECT plugin, database = current_database() FROM pg_replication_slots WHERE slot_name = %s",
                   (slot,))
    row = cursor.fetchone()
    if row is None:
        return False
    plugin, here = row
    if plugin != PLUGIN or not here:
        raise ConfigError(f"replication slot {slot!r} exists for plugin {plugin!r} in another database or "
                          f"of another plugin; choose another --slot-name")
    return True


def create_slot(cursor: Any, slot: str) -> None:
    cursor.execute("SELECT pg_create_logical_replication_slot(%s, %s)", (slot, PLUGIN))


def create_slot_exporting_snapshot(replication_cursor: Any, slot: str, temporary: bool = False) -> tuple[int, str]:
    """Create a slot on a replication connection and export the snapshot it starts at: its consistent LSN and the
    snapshot's name, importable (SET TRANSACTION SNAPSHOT) until that connection runs another command."""
    statement = sql.SQL("CREATE_REPLICATION_SLOT {} {} {} EXPORT_SNAPSHOT").format(
        sql.Identifier(slot), sql.SQL("TEMPORARY LOGICAL" if temporary else "LOGICAL"), sql.Identifier(PLUGIN))
    replication_cursor.execute(statement)
    _, consistent_point, snapshot_name, _ = replication_cursor.fetchone()
    return parse_lsn(consistent_point), snapshot_name


def snapshot_version(consistent_point: int) -> int:
    """The version of rows read in the snapshot a slot exported at `consistent_point`: one below it.

    The slot skips exactly the transactions whose commit record starts before that point (they are in the snapshot)
    and streams the others with their commit LSN, which cdc-postgres uses as `tf-version`: at or above the point,
    and one may start right at it. One below makes every change the snapshot misses strictly newer (the guard keeps
    it), and every change it holds no newer (the guard keeps the snapshot's row, which already has it)."""
    return consistent_point - 1


def drop_capture(cursor: Any, slot: str, publication: str | None) -> None:
    """Drop the slot (it must be inactive) and the publication, those that exist."""
    cursor.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                   (slot,))
    if publication is not None:
        cursor.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(publication)))


def drop_capture_sql(slot: str, publication: str | None) -> str:
    """The statements `drop_capture` runs, as a user types them into psql."""
    statements = [f"SELECT pg_drop_replication_slot('{slot}');"]
    if publication is not None:
        statements.append(f'DROP PUBLICATION IF EXISTS "{publication.replace(chr(34), chr(34) * 2)}";')
    return " ".join(statements)


def capture_exists(cursor: Any, slot: str, publication: str | None) -> bool:
    """Whether the slot, or the publication when one is named, exists in this database."""
    cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s "
                   "AND database = current_database()) OR EXISTS (SELECT 1 FROM pg_publication WHERE pubname = %s)",
                   (slot, publication))
    return bool(cursor.fetchone()[0])


def primary_key(cursor: Any, relation_id: int) -> list[str]:
    """The primary key's columns in key order, or [] when the table has none."""
    cursor.execute("SELECT a.attname FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
                   "ON true JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                   "WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.n", (relation_id,))
    return [name for (name,) in cursor.fetchall()]


def retained_wal_bytes(cursor: Any, slot: str) -> int | None:
    """WAL the server keeps for the slot (from its restart position to the current end); None without the slot."""
    cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) FROM pg_replication_slots "
                   "WHERE slot_name = %s", (slot,))
    row = cursor.fetchone()
    return None if row is None or row[0] is None else int(row[0])
