"""One consistent snapshot of a source database, shared by parallel readers, with its change-log position.

PostgreSQL: a temporary logical replication slot is created with EXPORT_SNAPSHOT on a replication connection, as
cdc-postgres's own snapshot does; every reader imports that snapshot (`SET TRANSACTION SNAPSHOT`) while the
connection stays open, and the slot goes once they all have. The snapshot sees exactly the transactions whose commit
record lies before the slot's consistent point, and any CDC slot streams the others with their commit LSN as the
version, at or above that point: the position is the point minus one, below every change the snapshot misses.
Without `wal_level=logical` no change log can be read, and the position is None (as MariaDB without a binlog).
MariaDB/MySQL: each reader opens `START TRANSACTION WITH CONSISTENT SNAPSHOT` and records the binlog position that
snapshot stands at (`binlog_snapshot_file/position`); documents carry their own reader's position.
SQLite: one read transaction on one connection (readers take turns on it).

A position orders a snapshot against the change log: the version-guarded writes let later CDC changes supersede
what the snapshot wrote, and never lose to it.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg2  # type: ignore[import-untyped]
import psycopg2.extras  # type: ignore[import-untyped]
from psycopg2 import sql  # type: ignore[import-untyped]
from sqlalchemy import Connection, Engine

from streams.catalog.dburl import credentials_refused, dialect_kind, error_reason
from streams.cdc import pgslot
from streams.cdc.pgoutput import lsn_text
from streams.errors import ConfigError, ServiceUnavailableError

INSUFFICIENT_PRIVILEGE = "42501"


def binlog_version(file: str, position: int) -> int:
    """A binlog coordinate (`mysql-bin.000042`, 1234) as one integer: file number in the high 32 bits."""
    return (int(file.rsplit(".", 1)[-1]) << 32) | int(position)


@dataclass
class Snapshot:
    """Open readers on one snapshot of `engine`; `position` is None when the source keeps no change log."""

    engine: Engine
    kind: str
    position: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    _holder: Connection | None = None
    _exporter: Any = None  # the replication connection whose temporary slot exported the snapshot
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "position": self.position, **self.detail}

    @contextlib.contextmanager
    def reader(self) -> Iterator[tuple[Connection, int | None]]:
        """A connection reading inside the snapshot, and the version of what it reads."""
        if self.kind == "sqlite":
            assert self._holder is not None
            with self._lock:
                yield self._holder, self.position
            return
        with self.engine.connect() as conn:
            if self.kind == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{self.detail['snapshot']}'")
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                    yield conn, self.position
            else:
                with conn.begin():
                    conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                    yield conn, binlog_snapshot_version(conn)

    def release(self) -> None:
        """Every reader has imported the snapshot: drop the exporting slot (it would hold back WAL and vacuum)."""
        if self._exporter is not None:
            with contextlib.suppress(psycopg2.Error):  # a temporary slot goes with its connection in any case
                self._exporter.cursor().execute(sql.SQL("DROP_REPLICATION_SLOT {}").format(
                    sql.Identifier(self.detail["slot"])))
            with contextlib.suppress(psycopg2.Error):
                self._exporter.close()
            self._exporter = None

    def close(self) -> None:
        self.release()
        if self._holder is not None:
            with contextlib.suppress(Exception):
                self._holder.rollback()
            self._holder.close()
            self._holder = None


def open_snapshot(engine: Engine) -> Snapshot:
    """Take the snapshot every reader of this run shares (the caller closes it when the run ends)."""
    kind = dialect_kind(engine)
    holder = engine.connect()
    try:
        if kind == "postgresql":
            logical = holder.exec_driver_sql("SHOW wal_level").scalar() == "logical"
            holder.rollback()
            if logical:
                holder.close()
                return _slot_snapshot(engine)
            holder = holder.execution_options(isolation_level="REPEATABLE READ")
            holder.begin()
            holder.exec_driver_sql("SET TRANSACTION READ ONLY")
            snapshot_id = holder.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
            return Snapshot(engine, kind, None, {"snapshot": snapshot_id}, holder)
        if kind == "mysql":
            holder.begin()
            holder.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            position = binlog_snapshot_version(holder)
            detail = {"binlog": _binlog_coordinates(holder)} if position is not None else {}
            return Snapshot(engine, kind, position, detail, holder)
        holder.begin()
        holder.exec_driver_sql("SELECT count(*) FROM sqlite_master").all()  # the read that fixes the snapshot
        return Snapshot(engine, kind, None, {}, holder)
    except BaseException:
        holder.close()
        raise


def _slot_snapshot(engine: Engine) -> Snapshot:
    """The snapshot of a new temporary logical slot, and the version below every change it does not see."""
    url = engine.url
    args: dict[str, Any] = url.translate_connect_args(username="user", database="dbname")
    args.update({k: v for k, v in url.query.items() if isinstance(v, str)})
    slot = pgslot.default_slot_name("migrate", uuid.uuid4().hex[:12])
    exporter = None
    try:
        exporter = psycopg2.connect(**args, application_name="tuneflow-migrate-snapshot",
                                    connection_factory=psycopg2.extras.LogicalReplicationConnection)
        consistent_point, name = pgslot.create_slot_exporting_snapshot(exporter.cursor(), slot, temporary=True)
    except psycopg2.Error as exc:
        if exporter is not None:
            exporter.close()
        reason = error_reason(exc, url.render_as_string(hide_password=False))
        if credentials_refused(exc) or getattr(exc, "pgcode", None) == INSUFFICIENT_PRIVILEGE:
            raise ConfigError(f"cannot take a snapshot with its change-log position: {reason} (the source's user "
                              f"needs the REPLICATION attribute: ALTER ROLE … REPLICATION)") from None
        if isinstance(exc, psycopg2.OperationalError):
            raise ServiceUnavailableError(f"cannot take a snapshot of the source: {reason}") from None
        raise ConfigError(f"cannot take a snapshot with its change-log position: {reason}") from None
    detail = {"snapshot": name, "lsn": lsn_text(consistent_point), "slot": slot}
    return Snapshot(engine, "postgresql", pgslot.snapshot_version(consistent_point), detail, _exporter=exporter)


def _binlog_coordinates(conn: Connection) -> dict[str, Any]:
    status: dict[str, str] = dict(conn.exec_driver_sql("SHOW STATUS LIKE 'binlog_snapshot_%%'").all())
    position = int(status.get("Binlog_snapshot_position") or 0)
    return {"file": status.get("Binlog_snapshot_file", ""), "position": position}


def binlog_snapshot_version(conn: Connection) -> int | None:
    """The binlog position this transaction's consistent snapshot stands at (None without a binlog)."""
    coordinates = _binlog_coordinates(conn)
    if not coordinates["file"]:
        return None
    return binlog_version(coordinates["file"], coordinates["position"])
