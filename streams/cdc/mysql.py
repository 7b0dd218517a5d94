"""Follows a MySQL 8 or MariaDB 10.11 server's row binlog (`mysql-replication`) and hands out the row changes of
the chosen tables as records, after the tables' initial snapshot when one is due; the position moves on, durably, only
past transactions whose every change the runtime reported durable in Kafka."""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent
from sqlalchemy.engine import make_url

from streams.catalog.dburl import credentials_refused, error_reason, mask_password, to_sqlalchemy_url
from streams.cdc.binlog import (
    BinlogError,
    BinlogEvent,
    Change,
    ChangeAssembler,
    RowsEvent,
    Statement,
    TableShape,
    TransactionEnd,
    TxBegin,
    TxCommit,
    position_number,
)
from streams.cdc.envelope import change_record
from streams.cdc.ledger import AckLedger
from streams.cdc.metrics import CdcMetrics
from streams.cdc.mysnapshot import BinlogPosition, TablePlan, open_readers
from streams.cdc.origin import ORIGIN_TABLE
from streams.cdc.positions import PositionStore
from streams.cdc.progress import SnapshotProgressStore
from streams.cdc.snapshot import InitialSnapshot
from streams.errors import ConfigError, TransientError
from streams.records import Record

REQUIRED_SETTINGS = {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}
SAVE_EVERY_S = 1.0
HEARTBEAT_S = 1.0  # the server sends one when it has nothing else, so a poll returns in time on a quiet server
# Server errors about the binlog itself (purged, unknown file): the saved position cannot be resumed from.
BINLOG_GONE = (1236,)
ACCESS_DENIED = (1044, 1045, 1227)


def default_server_id(stream: str, label: str, instance: int) -> int:
    """A replica id that stays the same across restarts of one instance and differs between instances (likely)."""
    return 1_000_000 + zlib.crc32(f"{stream}.{label}.{instance}".encode()) % 1_000_000_000


@dataclass(frozen=True)
class CaptureSettings:
    url: str
    tables: Sequence[str]
    server_id: int
    snapshot: str = "never"  # initial: read the tables first, resumably, once per position history; always: each start
    snapshot_chunk: int = 5000
    snapshot_parallel: int = 1

    @property
    def snapshots(self) -> bool:
        return self.snapshot != "never"


@dataclass
class _Connection:
    host: str
    port: int
    user: str
    password: str
    schema: str

    @classmethod
    def from_url(cls, url: str) -> _Connection:
        parsed = make_url(to_sqlalchemy_url(url))
        if parsed.get_backend_name() != "mysql":
            raise ConfigError(f"cdc-mysql reads MySQL or MariaDB, not {mask_password(url)!r}: "
                              "use mysql://user:password@host:3306/database")
        if not parsed.database:
            raise ConfigError(f"{mask_password(url)} names no database: mysql://user:password@host:3306/database")
        return cls(parsed.host or "127.0.0.1", parsed.port or 3306, parsed.username or "", parsed.password or "",
                   parsed.database)

    def settings(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "user": self.user, "passwd": self.password,
                "charset": "utf8mb4"}


class MysqlCapture:
    def __init__(self, settings: CaptureSettings, positions: PositionStore, metrics: CdcMetrics, log: Any,
                 progress: SnapshotProgressStore | None = None) -> None:
        self.settings = settings
        self.positions = positions
        self.metrics = metrics
        self.log = log
        self._where = mask_password(settings.url)
        self._db = _Connection.from_url(settings.url)
        self._control: Any = None
        self._reader: BinLogStreamReader | None = None
        self._shapes: dict[str, TableShape] = {}
        self._assembler: ChangeAssembler | None = None
        self._ledger = AckLedger()
        self._ends: dict[int, TransactionEnd] = {}  # confirmable positions by number, until confirmed
        self._resume: dict[str, Any] = {}  # where the stream (re)starts
        self._position: dict[str, Any] = {}  # the last transaction end every change up to which is durable
        self._saved = 0
        self._last_save = 0.0
        self._after_gtid = False
        self._reload_shapes = False
        self._progress = progress
        self._snapshot: InitialSnapshot | None = None
        self._start_due = True  # start() again before the next poll (a snapshot broke off)
        self._read_since_start = False  # a snapshot began in this process (`always` reads once per start)
        self._unflushed: int | None = None  # a position saved but not yet known to be in Kafka
        self._last_flush = 0.0

    # -- setup -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Check the server's binlog settings and the tables; read the initial snapshot if one is due (saving its
        binlog position first, on a first start), then stream from the saved position (or, on a first start without
        a snapshot, from the binlog's end, saved at once so a restart before any change still starts there). The
        stream follows the snapshot, so each row's snapshot record precedes its changes."""
        with self._errors("prepare capture from"):
            self._connect_control()
            self._check_binlog()
            self._shapes = self._load_shapes([self._table_name(t) for t in self.settings.tables])
            saved = self.positions.load()
            first = saved is None
            state = self._progress.load() if self._progress is not None and self.settings.snapshots else None
            if first:
                state = None  # a new position history: whatever an earlier snapshot read is not continued
            if self.settings.snapshot == "always" and not self._read_since_start and state and state.get("done"):
                state = None  # a new start reads the tables again (a reconnect of this run does not)
            if self.settings.snapshots and not (state and state.get("done")):
                at = self._begin_snapshot(state)
                self._read_since_start = True
                if first:
                    saved = at.saved()
                    self.positions.save(saved, flush=True)
                    self.log.info("first start: following %s from the snapshot's %s", self._where, at)
            if saved is None:
                saved = self._binlog_end()
                self.positions.save(saved, flush=True)
                self.log.info("first start: following %s from the binlog's end, %s:%d", self._where,
                              saved["file"], saved["pos"])
            elif not first:
                self.log.info("resuming %s from %s:%d (gtid %s)", self._where, saved["file"], saved["pos"],
                              saved.get("gtid"))
        self._resume = self._position = saved
        self._saved = position_number(saved["file"], saved["pos"])
        self.metrics.confirmed_position.set(self._saved)
        self.log.info("tables followed in %s: %s", self._db.schema, ", ".join(self._shapes))
        if self._snapshot is None or not self._snapshot.reading:
            self._open_stream()
        self._start_due = False

    def _begin_snapshot(self, state: dict[str, Any] | None) -> BinlogPosition:
        """Readers in consistent snapshots of one binlog position; the rows carry that position as their version
        (a resumed snapshot's is a new one, later: the rows still to read are as of then)."""
        assert self._progress is not None
        plans = self._snapshot_plans()
        readers, at = open_readers(self._db.settings(), self._db.schema, self.settings.snapshot_parallel, self.log)
        self._snapshot = InitialSnapshot(self._progress, self.metrics, self.log, chunk=self.settings.snapshot_chunk)
        self._snapshot.begin(readers, readers[0].cut, at.number, at.saved(), plans, state, str(at))
        return at

    def _snapshot_plans(self) -> list[TablePlan]:
        """The followed tables in key order; a table without a primary key cannot be read so."""
        with self._control.cursor() as cursor:
            cursor.execute("SELECT table_name, table_rows FROM information_schema.tables WHERE table_schema = %s",
                           (self._db.schema,))
            estimates = {name: int(rows or 0) for name, rows in cursor.fetchall()}
            cursor.execute("SELECT DISTINCT table_name FROM information_schema.key_column_usage WHERE "
                           "table_schema = %s AND constraint_name = 'PRIMARY'", (self._db.schema,))
            keyed = {name for (name,) in cursor.fetchall()}
        unkeyed = [name for name in self._shapes if name not in keyed]
        if unkeyed:
            raise ConfigError(f"table {', '.join(unkeyed)} has no primary key: the initial snapshot reads tables in "
                              "key order (give it one, or leave it out of --tables, or use --snapshot=never)")
        return [TablePlan(table=name, key=shape.key, estimated_rows=estimates.get(name, 0), shape=shape)
                for name, shape in self._shapes.items()]

    def _connect_control(self) -> None:
        if self._control is None:
            self._control = pymysql.connect(**self._db.settings(), database=self._db.schema, autocommit=True)

    def _check_binlog(self) -> None:
        with self._control.cursor() as cursor:
            cursor.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN %s", (tuple(REQUIRED_SETTINGS),))
            actual = {name.lower(): str(value).upper() for name, value in cursor.fetchall()}
        wrong = [f"{name}={actual.get(name, 'unset')} (needs {wanted})"
                 for name, wanted in REQUIRED_SETTINGS.items() if actual.get(name) != wanted]
        if wrong:
            raise ConfigError(f"{self._where} cannot be followed: " + ", ".join(wrong))

    def _table_name(self, name: str) -> str:
        """`table` or `database.table` (the URL's database: one source follows one database)."""
        schema, dot, table = name.rpartition(".")
        if dot and schema.strip("`") != self._db.schema:
            raise ConfigError(f"table {name!r} is not in {self._db.schema!r}, the database of {self._where}: "
                              "one cdc-mysql source follows the tables of one database")
        return (table if dot else name).strip("`")

    def _load_shapes(self, tables: Sequence[str]) -> dict[str, TableShape]:
        """The tables as the live schema declares them; an unknown name is a ConfigError naming those that exist."""
        with self._control.cursor() as cursor:
            cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                           "AND table_type = 'BASE TABLE'", (self._db.schema,))
            existing = {name for (name,) in cursor.fetchall()}
            unknown = [t for t in tables if t not in existing]
            if unknown:
                raise ConfigError(f"no table {', '.join(map(repr, unknown))} in {self._db.schema!r} at {self._where}"
                                  f" (it has: {', '.join(sorted(existing)) or 'no tables'})")
            cursor.execute("SELECT table_name, column_name, column_type, data_type, column_key "
                           "FROM information_schema.columns WHERE table_schema = %s AND table_name IN %s "
                           "ORDER BY table_name, ordinal_position", (self._db.schema, tuple(tables)))
            columns = cursor.fetchall()
            cursor.execute("SELECT table_name, column_name FROM information_schema.key_column_usage "
                           "WHERE table_schema = %s AND table_name IN %s AND constraint_name = 'PRIMARY' "
                           "ORDER BY table_name, ordinal_position", (self._db.schema, tuple(tables)))
            keys: dict[str, list[str]] = {}
            for table, column in cursor.fetchall():
                keys.setdefault(table, []).append(column)
            json_columns = self._mariadb_json_columns(cursor, tables)
        kinds: dict[tuple[str, str], set[str]] = {}  # (table, kind) → columns
        names: dict[str, list[str]] = {}
        for table, column, column_type, data_type, _ in columns:
            names.setdefault(table, []).append(column)
            data_type = str(data_type).lower()
            kind = "boolean" if str(column_type).lower().startswith("tinyint(1)") else \
                "json" if data_type == "json" or (table, column) in json_columns else data_type
            kinds.setdefault((table, kind), set()).add(column)

        def of(table: str, kind: str) -> frozenset[str]:
            return frozenset(kinds.get((table, kind), ()))

        return {t: TableShape(t, tuple(keys.get(t) or names.get(t) or ()), booleans=of(t, "boolean"),
                              json=of(t, "json"), times=of(t, "time"), sets=of(t, "set"),
                              columns=tuple(names.get(t, ()))) for t in tables}

    def _mariadb_json_columns(self, cursor: Any, tables: Sequence[str]) -> set[tuple[str, str]]:
        """MariaDB's JSON is LONGTEXT with a `json_valid(column)` check named after the column."""
        try:
            cursor.execute("SELECT table_name, constraint_name, check_clause FROM information_schema.check_constraints"
                           " WHERE constraint_schema = %s AND table_name IN %s", (self._db.schema, tuple(tables)))
        except pymysql.Error:  # MySQL before 8.0.16 has no such view; its JSON is a type of its own anyway
            return set()
        return {(table, name) for table, name, clause in cursor.fetchall()
                if str(clause).replace(" ", "").lower() == f"json_valid(`{name}`)".lower()}

    def _binlog_end(self) -> dict[str, Any]:
        with self._control.cursor() as cursor:
            for statement in ("SHOW BINARY LOG STATUS", "SHOW MASTER STATUS"):  # MySQL 8.4 dropped the second
                with contextlib.suppress(pymysql.err.ProgrammingError):
                    cursor.execute(statement)
                    row = cursor.fetchone()
                    if row is None:
                        break
                    return {"file": row[0], "pos": int(row[1]), "gtid": None}
        raise ConfigError(f"{self._where} writes no binlog: start it with log_bin, binlog_format=ROW, "
                          "binlog_row_image=FULL, binlog_row_metadata=FULL and a server_id")

    def _open_stream(self) -> None:
        resume = self._resume
        self._reader = BinLogStreamReader(
            connection_settings=self._db.settings(), server_id=self.settings.server_id, blocking=True,
            resume_stream=True, log_file=resume["file"], log_pos=int(resume["pos"]),
            only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, QueryEvent, XidEvent, GtidEvent,
                         MariadbGtidEvent, RotateEvent, HeartbeatLogEvent],
            only_schemas=[self._db.schema], only_tables=[*self._shapes, ORIGIN_TABLE], slave_heartbeat=HEARTBEAT_S,
            enable_logging=False)
        self._assembler = ChangeAssembler(self._db.schema, self._shapes, on_ddl=self._schema_changed)
        self._ledger = AckLedger(position_number(self._resume["file"], self._resume["pos"]))
        self._ends.clear()
        self._after_gtid = False

    def _schema_changed(self, statement: Statement) -> None:
        self._reload_shapes = True

    # -- streaming -------------------------------------------------------------------------------------------

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """A chunk of the initial snapshot while one is being read; then changes as they arrive: returns with up to
        `max_records`, or at the timeout (a second later on a server with nothing to send, when its heartbeat
        arrives)."""
        if self._start_due:
            self.start()  # after a snapshot broke off: resume it from its saved progress
        snapshot = self._snapshot
        if snapshot is not None and snapshot.reading:
            with self._errors("read the initial snapshot from", reconnect=True):
                return snapshot.read(max_records, timeout_s)
        if self._reader is None:
            with self._errors("stream changes from"):
                self._connect_control()
                self._open_stream()
        assert self._reader is not None and self._assembler is not None
        deadline = time.monotonic() + timeout_s
        records: list[Record] = []
        with self._errors("stream changes from", reconnect=True):
            while len(records) < max_records and time.monotonic() < deadline:
                event = self._reader.fetchone()
                if event is None:
                    break
                for plain in self._plain(event, self._reader.log_file):
                    self._take(plain, records)
                if self._reload_shapes:
                    self._reload_shapes = False
                    self._shapes.update(self._load_shapes(list(self._shapes)))
        self._save_settled()
        return records

    def _plain(self, event: Any, file: str) -> list[BinlogEvent]:
        """mysql-replication's event as this package's (see `streams/cdc/binlog.py`)."""
        pos = event.packet.log_pos
        if isinstance(event, GtidEvent | MariadbGtidEvent):
            self._after_gtid = True
            return [TxBegin(file, pos, str(event.gtid), event.timestamp)]
        if isinstance(event, WriteRowsEvent):
            return [RowsEvent("insert", event.schema, event.table, [r["values"] for r in event.rows])]
        if isinstance(event, DeleteRowsEvent):
            return [RowsEvent("delete", event.schema, event.table, [r["values"] for r in event.rows])]
        if isinstance(event, UpdateRowsEvent):
            return [RowsEvent("update", event.schema, event.table,
                              [(r["before_values"], r["after_values"]) for r in event.rows])]
        if isinstance(event, XidEvent):
            self._after_gtid = False
            return [TxCommit(file, pos)]
        if isinstance(event, QueryEvent):
            query = event.query if isinstance(event.query, str) else event.query.decode(errors="replace")
            word = " ".join(query.split()[:2]).upper()
            if word == "BEGIN":
                begin = not self._after_gtid
                self._after_gtid = False
                return [TxBegin(file, pos, None, event.timestamp)] if begin else []
            if word in ("COMMIT", "ROLLBACK"):  # a transaction that wrote to a non-transactional engine
                return [TxCommit(file, pos)]
            if word.startswith(("SAVEPOINT", "ROLLBACK TO", "RELEASE SAVEPOINT")):  # inside a transaction
                return []
            self._after_gtid = False
            schema = event.schema.decode() if isinstance(event.schema, bytes) else str(event.schema or "")
            return [Statement(file, pos, schema, query, event.timestamp)]
        return []  # rotations and heartbeats only move the reader

    def _take(self, event: BinlogEvent, records: list[Record]) -> None:
        assert self._assembler is not None
        for item in self._assembler.feed(event):
            if isinstance(item, Change):
                records.append(change_record(item, item.version, item.source))
                self._ledger.emitted()
            else:
                number = item.number
                self._ends[number] = item
                self._ledger.transaction_end(number)

    def ack(self, count: int) -> None:
        """`count` more records are durable downstream: the snapshot's chunks they complete are done, the
        transactions they complete may be skipped on restart."""
        if self._snapshot is not None:
            count = self._snapshot.acked(count)
        if count:
            self._ledger.acked(count)
            self._save_settled(every_s=0.0)

    def _save_settled(self, every_s: float = SAVE_EVERY_S, force: bool = False) -> None:
        """Write the confirmed position: after every acknowledged batch (it reaches Kafka within the producer's
        linger, so a kill re-reads what was not acknowledged and at most the batch whose position was in flight),
        and at most every `every_s` while only other databases' transactions move it (re-reading those costs no
        duplicates). `force` waits until Kafka has it (on close)."""
        confirmed = self._ledger.confirmed
        self._note_flushed(force)
        settled = [n for n in self._ends if n <= confirmed]
        if settled:
            end = self._ends[max(settled)]
            self._position = {"file": end.file, "pos": end.pos, "gtid": end.gtid}
            for number in settled:
                del self._ends[number]
        if confirmed <= self._saved:
            return
        now = time.monotonic()
        if force or now - self._last_save >= every_s:
            self.positions.save(self._position, flush=force)
            self._saved, self._last_save = confirmed, now
            if force:
                self.metrics.confirmed_position.set(confirmed)
            else:
                self._unflushed = confirmed

    def _note_flushed(self, force: bool) -> None:
        """About once a second, wait until the positions saved are in Kafka, and show the last as confirmed."""
        now = time.monotonic()
        if self._unflushed is None or (not force and now - self._last_flush < SAVE_EVERY_S):
            return
        self.positions.flush()
        self.metrics.confirmed_position.set(self._unflushed)
        self._unflushed, self._last_flush = None, now

    # -- errors and shutdown ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, doing: str, reconnect: bool = False) -> Iterator[None]:
        """Driver errors as tuneflow's: refused credentials or rights, a purged binlog, are ConfigErrors; the rest
        transient (the runtime retries; a lost stream resumes from the last saved position). Never the password."""
        try:
            yield
        except (pymysql.Error, BinlogError, OSError) as exc:
            reason = error_reason(exc, self.settings.url)
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            if credentials_refused(exc) or code in ACCESS_DENIED:
                raise ConfigError(f"cannot {doing} {self._where}: {reason}") from None
            if code in BINLOG_GONE:
                raise ConfigError(f"cannot {doing} {self._where} at {self._resume.get('file')}:"
                                  f"{self._resume.get('pos')}: {reason}. The server no longer has that binlog; "
                                  "changes since were lost to this stream: start it again with a new stream name "
                                  "(and a snapshot) to follow from now") from None
            snapshot = self._snapshot
            snapshot_broke = snapshot is not None and snapshot.reading
            if snapshot is not None and snapshot_broke:
                snapshot.close()
                self._snapshot = None
                self._start_due = True  # the next poll starts again, resuming the snapshot from its progress
            self._close_stream()
            self._close_control()  # it may be as broken as the stream; both are opened again by the next poll
            if snapshot_broke:
                self.log.warning("the initial snapshot broke off (%s); resuming it from its saved progress", reason)
            elif reconnect:
                self.log.warning("lost the binlog stream (%s); resuming from %s:%s", reason,
                                 self._resume.get("file"), self._resume.get("pos"))
            raise TransientError(f"cannot {doing} {self._where}: {reason}") from None

    def _close_stream(self) -> None:
        """The stream restarts after the last transaction whose changes are all durable (the runtime acknowledges
        every batch before it polls again, so nothing handed out is lost by this)."""
        if self._reader is not None:
            with contextlib.suppress(Exception):
                self._reader.close()
        self._reader = None
        if self._position:
            self._resume = self._position

    def _close_control(self) -> None:
        if self._control is not None:
            with contextlib.suppress(Exception):  # closing a connection the server dropped
                self._control.close()
            self._control = None

    def close(self) -> None:
        if self._snapshot is not None:
            self._snapshot.close()
            self._snapshot = None
        self._save_settled(force=True)
        self._close_stream()
        self._close_control()
        self.positions.close()
