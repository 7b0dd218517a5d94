"""Follows a PostgreSQL database through a logical replication slot (pgoutput v1) and hands out its row changes as
records; confirms a transaction to the server only once the runtime reports all of its changes durable."""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2  # type: ignore[import-untyped]
import psycopg2.extras  # type: ignore[import-untyped]

from streams.catalog.dburl import credentials_refused, error_reason, mask_password
from streams.cdc import pgslot
from streams.cdc.changes import Change, ChangeAssembler
from streams.cdc.envelope import change_record
from streams.cdc.ledger import AckLedger
from streams.cdc.metrics import CdcMetrics
from streams.cdc.pgoutput import Relation, decode, lsn_text
from streams.cdc.pgsnapshot import PgChunkReader, TablePlan, plan_tables
from streams.cdc.progress import SnapshotProgressStore
from streams.cdc.snapshot import InitialSnapshot
from streams.errors import ConfigError, TransientError
from streams.records import Record
from streams.runtime.contract import Leftover

INSUFFICIENT_PRIVILEGE = "42501"
# Text output the decoder reads exactly, whatever the server's defaults are.
SESSION = "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c bytea_output=hex -c extra_float_digits=3"


@dataclass(frozen=True)
class CaptureSettings:
    url: str
    tables: Sequence[str]
    slot: str
    publication: str
    heartbeat_s: float
    snapshot: str = "never"  # initial: read the tables first, resumably, once per slot; always: at every start
    snapshot_chunk: int = 5000
    snapshot_parallel: int = 1

    @property
    def snapshots(self) -> bool:
        return self.snapshot != "never"


class PostgresCapture:
    def __init__(self, settings: CaptureSettings, metrics: CdcMetrics, log: Any,
                 progress: SnapshotProgressStore | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.log = log
        self._where = mask_password(settings.url)
        self._args = pgslot.connect_args(settings.url)
        self._ledger = AckLedger()
        self._keys: dict[int, list[str]] = {}
        self._control: Any = None
        self._stream: Any = None
        self._cursor: Any = None
        self._assembler = ChangeAssembler(self._primary_key)
        self._last_beat = 0.0
        self._progress = progress
        self._snapshot: InitialSnapshot | None = None
        self._read_since_start = False  # a snapshot began in this process (`always` reads once per start)

    # -- setup -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Check the tables, create the publication and slot if absent, then read the initial snapshot if one is
        due, or else stream from the slot. The snapshot comes first and the stream after it (from the slot's
        position, which the snapshot does not move), so each row's snapshot record precedes its changes."""
        with self._errors("prepare capture from"):
            self._connect_control()
            with self._control.cursor() as cursor:
                tables = pgslot.resolve_tables(cursor, self.settings.tables)
                added = pgslot.ensure_publication(cursor, self.settings.publication, tables)
                exists = pgslot.slot_exists(cursor, self.settings.slot)
                plans = plan_tables(cursor, tables) if self.settings.snapshots else []
        if added:
            self.log.info("publication %s now publishes %s", self.settings.publication, ", ".join(map(str, added)))
        state = self._progress.load() if self._progress is not None and self.settings.snapshots else None
        if not exists:
            state = None  # a new slot starts a new history: whatever an earlier snapshot read is not continued
        if self.settings.snapshot == "always" and not self._read_since_start and state and state.get("done"):
            state = None  # a new start reads the tables again (a reconnect of this run does not)
        self._ledger.forget_outstanding()
        with self._errors("prepare capture from"):
            if self.settings.snapshots and not (state and state.get("done")):
                self._begin_snapshot(exists, plans, state)
                self._read_since_start = True
            else:
                if not exists:
                    with self._control.cursor() as cursor:
                        pgslot.create_slot(cursor, self.settings.slot)
                self._start_streaming()
        self.log.info("%s replication slot %s (publication %s, tables %s); drop it when the stream is gone: "
                      "SELECT pg_drop_replication_slot('%s')", "resuming from" if exists else "created",
                      self.settings.slot, self.settings.publication, ", ".join(map(str, tables)), self.settings.slot)

    def _begin_snapshot(self, slot_exists: bool, plans: list[TablePlan], state: dict[str, Any] | None) -> None:
        """A new slot exports the snapshot it starts at; an existing one (the snapshot was interrupted) gets a
        temporary slot's, so the rows still to read carry the exact LSN they were read at."""
        assert self._progress is not None
        self._snapshot = InitialSnapshot(self._progress, self.metrics, self.log, chunk=self.settings.snapshot_chunk)
        exporter = psycopg2.connect(**self._args, connection_factory=psycopg2.extras.LogicalReplicationConnection)
        readers: list[PgChunkReader] = []
        try:
            slot = pgslot.default_slot_name(self.settings.slot, "snapshot") if slot_exists else self.settings.slot
            point, name = pgslot.create_slot_exporting_snapshot(exporter.cursor(), slot, temporary=slot_exists)
            version = pgslot.snapshot_version(point)  # every change the snapshot misses commits above it
            for _ in range(self.settings.snapshot_parallel):
                readers.append(PgChunkReader(self._args, name))
        except BaseException:
            for reader in readers:
                reader.close()
            raise
        finally:
            exporter.close()  # the imported snapshot lives on in the readers' transactions (a temporary slot goes)
        self._snapshot.begin(readers, readers[0].cut, version, {"lsn": version}, plans, state, f"LSN {version}")

    def _start_streaming(self) -> None:
        self._stream = psycopg2.connect(**self._args, options=SESSION, application_name="tuneflow-cdc",
                                        connection_factory=psycopg2.extras.LogicalReplicationConnection)
        self._cursor = self._stream.cursor()
        self._cursor.start_replication(slot_name=self.settings.slot, decode=False, options={
            "proto_version": "1", "publication_names": self.settings.publication, "messages": "true"})
        self._assembler = ChangeAssembler(self._primary_key)
        self._last_beat = 0.0

    def _connect_control(self) -> None:
        if self._control is None:
            self._control = psycopg2.connect(**self._args, application_name="tuneflow-cdc-control")
            self._control.autocommit = True

    def _primary_key(self, relation: Relation) -> list[str]:
        if relation.relation_id not in self._keys:
            with self._control.cursor() as cursor:
                self._keys[relation.relation_id] = pgslot.primary_key(cursor, relation.relation_id)
        return self._keys[relation.relation_id]

    # -- streaming -------------------------------------------------------------------------------------------

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """A chunk of the initial snapshot while one is being read; then changes as they arrive: returns once it has
        some and the server has no more at hand, or at the timeout."""
        if self._control is None:
            self.start()  # after a lost connection: resume from the slot (and the snapshot's saved progress)
        snapshot = self._snapshot
        if snapshot is not None and snapshot.reading:
            with self._errors("read the initial snapshot from", reconnect=True):
                rows = snapshot.read(max_records, timeout_s)
                self._beat()
            return rows
        deadline = time.monotonic() + timeout_s
        records: list[Record] = []
        with self._errors("stream changes from", reconnect=True):
            if self._cursor is None:
                self._start_streaming()
            while len(records) < max_records:
                message = self._cursor.read_message()
                if message is not None:
                    self._take(message.payload, records)
                    continue
                left = deadline - time.monotonic()
                if records or left <= 0:
                    break
                self._beat()
                select.select([self._cursor], [], [], min(left, self.settings.heartbeat_s))
            self._beat()
        return records

    def _take(self, payload: bytes, records: list[Record]) -> None:
        for item in self._assembler.feed(decode(payload)):
            if isinstance(item, Change):
                source = {"lsn": item.commit_lsn, "txid": item.xid, "commit_ts": item.commit_ts}
                records.append(change_record(item, item.commit_lsn, source))
                self._ledger.emitted()
            else:
                self._ledger.transaction_end(item.end_lsn)

    def ack(self, count: int) -> None:
        """`count` more records are durable downstream: confirm every transaction they complete."""
        before = self._ledger.confirmed
        if self._snapshot is not None:
            count = self._snapshot.acked(count)
        self._ledger.acked(count)
        if self._ledger.confirmed > before and self._cursor is not None:
            try:
                self._confirm(reply=False)
            except psycopg2.Error as exc:  # confirmed again by the next heartbeat, or resumed from the slot
                self.log.warning("could not confirm %s yet: %s", lsn_text(self._ledger.confirmed),
                                 error_reason(exc, self.settings.url))

    def _beat(self) -> None:
        """Every heartbeat: confirm what is settled (past quiet stretches too) and measure the retained WAL."""
        now = time.monotonic()
        if now - self._last_beat < self.settings.heartbeat_s:
            return
        self._last_beat = now
        if self._cursor is not None:
            if not self._assembler.mid_transaction:
                self._ledger.advance_idle(self._cursor.wal_end)
            self._confirm(reply=True)
        with self._control.cursor() as cursor:
            retained = pgslot.retained_wal_bytes(cursor, self.settings.slot)
        if retained is not None:
            self.metrics.retained_wal_bytes.set(retained)

    def _confirm(self, reply: bool) -> None:
        confirmed = self._ledger.confirmed
        if confirmed:
            self._cursor.send_feedback(write_lsn=confirmed, flush_lsn=confirmed, reply=reply)
            self.metrics.confirmed_position.set(confirmed)
            self.log.debug("confirmed %s", lsn_text(confirmed))
        elif reply:
            self._cursor.send_feedback(reply=True)

    # -- errors and shutdown ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, doing: str, reconnect: bool = False) -> Iterator[None]:
        """psycopg2 errors as tuneflow's: refused credentials or rights are ConfigErrors, the rest transient (the
        runtime retries; a lost stream reconnects and resumes from the slot). Never the password."""
        try:
            yield
        except psycopg2.Error as exc:
            reason = error_reason(exc, self.settings.url)
            if credentials_refused(exc) or getattr(exc, "pgcode", None) == INSUFFICIENT_PRIVILEGE:
                raise ConfigError(f"cannot {doing} {self._where}: {reason}") from None
            self.close()
            if reconnect:
                self.log.warning("lost the replication stream (%s); resuming from slot %s", reason, self.settings.slot)
            raise TransientError(f"cannot {doing} {self._where}: {reason}") from None

    def close(self) -> None:
        if self._snapshot is not None:
            self._snapshot.close()
            self._snapshot = None
        for connection in (self._stream, self._control):
            if connection is not None:
                with contextlib.suppress(psycopg2.Error):
                    connection.close()
        self._stream = self._cursor = self._control = None


def capture_leftovers(url: str, slot: str, publication: str | None) -> list[Leftover]:
    """The slot (and the publication the source created, when named) as a Leftover, if it is still there; when the
    database cannot be asked, it is reported all the same, saying so."""
    where = mask_password(url)
    args = pgslot.connect_args(url)
    unchecked = ""
    try:
        with contextlib.closing(psycopg2.connect(**args, application_name="tuneflow-cleanup")) as connection, \
                connection.cursor() as cursor:
            if not pgslot.capture_exists(cursor, slot, publication):
                return []
    except psycopg2.Error as exc:
        unchecked = f" (could not check that it is still there: {error_reason(exc, url)})"

    def drop() -> None:
        try:
            with contextlib.closing(psycopg2.connect(**args, application_name="tuneflow-cleanup")) as connection:
                connection.autocommit = True
                with connection.cursor() as cursor:
                    pgslot.drop_capture(cursor, slot, publication)
        except psycopg2.Error as exc:
            raise TransientError(f"cannot drop replication slot {slot} on {where}: {error_reason(exc, url)}") \
                from None

    what = f"replication slot {slot}" + (f" and publication {publication}" if publication else "") + \
        f" on {where}{unchecked}"
    return [Leftover(what, pgslot.drop_capture_sql(slot, publication), drop)]
