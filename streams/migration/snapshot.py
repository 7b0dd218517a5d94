"""One consistent snapshot of a source database, shared by parallel readers, with its change-log position.

PostgreSQL: a repeatable-read transaction exports its snapshot (`pg_export_snapshot`) and stays open while every
reader imports it (`SET TRANSACTION SNAPSHOT`); the position is the WAL LSN at that moment.
MariaDB/MySQL: each reader opens `START TRANSACTION WITH CONSISTENT SNAPSHOT` and records the binlog position that
snapshot stands at (`binlog_snapshot_file/position`); documents carry their own reader's position.
SQLite: one read transaction on one connection (readers take turns on it).

A position orders a snapshot against the change log: the version-guarded writes let later CDC changes supersede
what the snapshot wrote, and never lose to it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from streams.catalog.dburl import dialect_kind


def lsn_version(lsn: str) -> int:
    """A PostgreSQL LSN (`16/B374D848`) as the integer the change log's versions use."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


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

    def close(self) -> None:
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
            holder = holder.execution_options(isolation_level="REPEATABLE READ")
            holder.begin()
            holder.exec_driver_sql("SET TRANSACTION READ ONLY")
            snapshot_id, lsn = holder.exec_driver_sql("SELECT pg_export_snapshot(), pg_current_wal_lsn()::text").one()
            return Snapshot(engine, kind, lsn_version(lsn), {"snapshot": snapshot_id, "lsn": lsn}, holder)
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
