"""The snapshot `migrate` reads on the real PostgreSQL, against the change log a CDC slot streams: while a writer
commits without pause, every snapshot's position is at or above the commit LSN (cdc-postgres's `tf-version`) of each
transaction it sees, and strictly below that of each one it does not, so the version guard keeps exactly the right
side; the slot that exported the snapshot is gone once the readers hold it."""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator

import psycopg2
import psycopg2.extras
import pytest
from sqlalchemy import Engine, text

from streams.cdc.changes import ChangeAssembler
from streams.cdc.pgoutput import decode
from streams.migration.snapshot import open_snapshot
from tests.integration.services import unique_name

pytestmark = pytest.mark.integration

SNAPSHOTS = 20


def url_of(engine: Engine) -> str:
    """A libpq URL of the engine's database."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class Committer(threading.Thread):
    """One-row transactions, back to back: some commit while a snapshot is being taken."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.committed = 0

        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            connection = psycopg2.connect(self.url)
            with connection.cursor() as cursor:
                while not self.stop.is_set():
                    cursor.execute("INSERT INTO beat VALUES (%s)", (self.committed + 1,))
                    connection.commit()
                    self.committed += 1
            connection.close()
        except BaseException as exc:
            self.error = exc
            self.stop.set()


@pytest.fixture
def watched(postgres_engine: Engine) -> Iterator[tuple[str, str]]:
    """A table under a pgoutput slot created before any snapshot, as a CDC source's would be: URL, slot."""
    url = url_of(postgres_engine)
    slot = unique_name("tf_watch")
    with postgres_engine.begin() as conn:
        conn.execute(text("CREATE TABLE beat (id bigint PRIMARY KEY)"))
        conn.execute(text("CREATE PUBLICATION watch FOR TABLE beat"))
    with postgres_engine.begin() as conn:
        conn.execute(text("SELECT pg_create_logical_replication_slot(:slot, 'pgoutput')"), {"slot": slot})
    try:
        yield url, slot
    finally:
        deadline = time.monotonic() + 30
        with postgres_engine.connect() as conn:
            while conn.execute(text("SELECT active FROM pg_replication_slots WHERE slot_name = :slot"),
                               {"slot": slot}).scalar() and time.monotonic() < deadline:
                time.sleep(0.1)  # the walsender of a closed stream ends a moment later
            conn.rollback()
        with postgres_engine.begin() as conn:
            conn.execute(text("SELECT pg_drop_replication_slot(:slot)"), {"slot": slot})


def commit_versions(url: str, slot: str, expected: int) -> dict[int, int]:
    """Each row's insert and the commit LSN its transaction streams with, read from the slot."""
    stream = psycopg2.connect(url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    try:
        cursor = stream.cursor()
        cursor.start_replication(slot_name=slot, decode=False,
                                 options={"proto_version": "1", "publication_names": "watch"})
        assembler = ChangeAssembler(lambda _relation: ["id"])
        versions: dict[int, int] = {}
        deadline = time.monotonic() + 60
        while len(versions) < expected and time.monotonic() < deadline:
            message = cursor.read_message()
            if message is None:
                select.select([cursor], [], [], 0.5)
                continue
            for item in assembler.feed(decode(message.payload)):
                after = getattr(item, "after", None)
                if after is not None:
                    versions[int(after["id"])] = item.commit_lsn
        return versions
    finally:
        stream.close()


def exporting_slots(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT slot_name FROM pg_replication_slots "
                                      "WHERE slot_name LIKE 'tuneflow_migrate_%'")).scalars())


def test_snapshot_position_splits_the_change_log_exactly_where_the_snapshot_does(
        watched: tuple[str, str], postgres_engine: Engine) -> None:
    url, slot = watched
    committer = Committer(url)
    committer.start()
    seen: list[tuple[int, set[int]]] = []
    try:
        while committer.committed < 50 and not committer.stop.is_set():
            time.sleep(0.01)
        for _ in range(SNAPSHOTS):
            snapshot = open_snapshot(postgres_engine)
            try:
                assert snapshot.position is not None
                with snapshot.reader() as (conn, version):
                    assert version == snapshot.position
                    snapshot.release()  # the readers hold the snapshot now: the slot that exported it goes
                    assert exporting_slots(postgres_engine) == []
                    time.sleep(0.05)  # commits after the release, still outside this snapshot
                    ids = set(conn.execute(text("SELECT id FROM beat")).scalars())
            finally:
                snapshot.close()
            seen.append((snapshot.position, ids))
            time.sleep(0.05)
    finally:
        committer.stop.set()
        committer.join(10)
    assert committer.error is None, committer.error
    versions = commit_versions(url, slot, committer.committed)
    assert len(versions) == committer.committed
    for position, ids in seen:
        assert ids and len(ids) < len(versions)
        late = sorted(i for i in ids if versions[i] > position)
        missed = sorted(i for i in versions if i not in ids and versions[i] <= position)
        assert late == [] and missed == [], f"position {position}: seen but newer {late}, unseen but older {missed}"
    assert exporting_slots(postgres_engine) == []
