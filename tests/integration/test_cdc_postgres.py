"""The `cdc-postgres` source on the real PostgreSQL and Kafka, run as a real process and `kill -9`ed twice while a
writer changes the catalog tables: applying the topic in version order (commit LSN, then place in the transaction)
to an empty map reproduces every table row for row; every change arrives, duplicates only after a kill."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg2
import pytest
from sqlalchemy import create_engine

from streams.catalog.dburl import to_sqlalchemy_url
from streams.catalog.generator import generate_catalog
from streams.catalog.legacy import create_legacy_schema
from streams.records import TX_ID_HEADER, TX_LAST_HEADER, TX_SEQ_HEADER, VERSION_HEADER
from streams.runtime.metrics import metric_sum
from streams.serde import canonical_json, dumps
from tests.integration.cdc_replay import (
    Row,
    checksums,
    replay,
    versions,
)
from tests.integration.pipeline import create_topic, read_topic
from tests.integration.processes import AppProcess, wait_for
from tests.integration.services import drop_captures, scratch_database, unique_name
from tests.integration.test_stream_lifecycle import Cli

TABLES = ("artist", "album", "album_artist", "track", "track_artist", "genre", "track_genre")
LYRICS = "가사 lyrics Текст 歌詞 " * 200  # ~6 kB, stored out of line: an update that leaves it is sent as 'u'


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    with cdc_database(postgres_url) as url:
        yield url


@contextmanager
def cdc_database(postgres_url: str) -> Iterator[str]:
    """The legacy schema, empty, with a TOASTed column on `track` (identity DEFAULT) and `album` (FULL)."""
    with scratch_database(postgres_url, prefix="tf_cdc") as url:
        engine = create_engine(to_sqlalchemy_url(url))
        create_legacy_schema(engine)
        engine.dispose()
        with connect(url) as cursor:
            for table in ("track", "album"):
                cursor.execute(f"ALTER TABLE {table} ADD COLUMN notes text")
                cursor.execute(f"ALTER TABLE {table} ALTER notes SET STORAGE EXTERNAL")
            cursor.execute("ALTER TABLE album REPLICA IDENTITY FULL")
            cursor.execute("ALTER TABLE track_artist REPLICA IDENTITY FULL")
        try:
            yield url
        finally:
            drop_captures(url)


class connect:
    def __init__(self, url: str) -> None:
        self.connection = psycopg2.connect(url)
        self.connection.autocommit = True

    def __enter__(self) -> Any:
        return self.connection.cursor()

    def __exit__(self, *_: object) -> None:
        self.connection.close()


class Writer(threading.Thread):
    """Transactions of one to three changes of every kind, with the ids of the transactions it committed."""

    def __init__(self, url: str, transactions: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.connection = psycopg2.connect(url)
        self.transactions = transactions
        self.rng = random.Random(seed)
        self.committed: list[int] = []  # the transactions that changed rows
        self.changed = 0
        self.stopping = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.connection.cursor() as cursor:
                for _ in range(self.transactions):
                    if self.stopping:
                        break
                    self.changed = 0
                    for _ in range(self.rng.randint(1, 3)):
                        self.rng.choice(self.OPERATIONS)(self, cursor)
                    cursor.execute("SELECT pg_current_xact_id()::text::bigint % 4294967296")
                    if self.changed:  # a transaction that changed no row sends nothing
                        self.committed.append(cursor.fetchone()[0])
                    self.connection.commit()
                    time.sleep(0.002)
        except BaseException as exc:
            self.error = exc
        finally:
            self.connection.close()

    def change(self, cursor: Any, statement: str, parameters: tuple[Any, ...] = ()) -> None:
        cursor.execute(statement, parameters)
        self.changed += cursor.rowcount

    def retitle_track(self, cursor: Any) -> None:  # leaves `notes` (TOASTed) untouched
        self.change(cursor, "UPDATE track SET title = title || '·', duration_ms = duration_ms + 1 "
                       "WHERE track_id = (SELECT track_id FROM track ORDER BY random() LIMIT 1)")

    def annotate(self, cursor: Any) -> None:
        table, key = self.rng.choice((("track", "track_id"), ("album", "album_id")))
        self.change(cursor, f"UPDATE {table} SET notes = %s WHERE {key} = (SELECT {key} FROM {table} "
                       "ORDER BY random() LIMIT 1)", (LYRICS + str(self.rng.random()),))

    def relabel_album(self, cursor: Any) -> None:  # FULL identity, `notes` untouched
        self.change(cursor, "UPDATE album SET label = 'Label ' || md5(random()::text) "
                       "WHERE album_id = (SELECT album_id FROM album ORDER BY random() LIMIT 1)")

    def move_genre(self, cursor: Any) -> None:  # a primary-key change under identity DEFAULT
        self.change(cursor, "UPDATE track_genre tg SET genre_id = g.genre_id FROM (SELECT genre_id FROM genre "
                       "ORDER BY random() LIMIT 1) g WHERE (tg.track_id, tg.genre_id) = (SELECT track_id, genre_id "
                       "FROM track_genre ORDER BY random() LIMIT 1) AND NOT EXISTS (SELECT 1 FROM track_genre x "
                       "WHERE x.track_id = tg.track_id AND x.genre_id = g.genre_id)")

    def change_role(self, cursor: Any) -> None:  # a primary-key change under identity FULL
        role = self.rng.choice(("FEATURED", "COMPOSER", "LYRICIST", "ARRANGER"))
        self.change(cursor, "UPDATE track_artist ta SET role = %s WHERE (ta.track_id, ta.artist_id, ta.role) = "
                       "(SELECT track_id, artist_id, role FROM track_artist ORDER BY random() LIMIT 1) "
                       "AND NOT EXISTS (SELECT 1 FROM track_artist x WHERE x.track_id = ta.track_id "
                       "AND x.artist_id = ta.artist_id AND x.role = %s)", (role, role))

    def add_artist(self, cursor: Any) -> None:
        self.change(cursor, "INSERT INTO artist SELECT max(artist_id) + 1, 'Új 새 artist ' || count(*), 'KR', 2001, "
                       "now() FROM artist")

    def add_track(self, cursor: Any) -> None:
        self.change(cursor, "INSERT INTO track (track_id, album_id, title, track_no, updated_at) SELECT "
                       "coalesce(max(track_id), 0) + 1, (SELECT album_id FROM album ORDER BY random() LIMIT 1), "
                       "'Nueva canción ' || count(*), 1, now() FROM track")

    def drop_credit(self, cursor: Any) -> None:
        self.change(cursor, "DELETE FROM track_artist WHERE ctid = (SELECT ctid FROM track_artist ORDER BY random() "
                       "LIMIT 1)")

    def delete_track(self, cursor: Any) -> None:
        cursor.execute("SELECT track_id FROM track ORDER BY random() LIMIT 1")
        row = cursor.fetchone()
        if row is not None:
            for table in ("track_genre", "track_artist", "track"):
                self.change(cursor, f"DELETE FROM {table} WHERE track_id = %s", row)

    OPERATIONS = (retitle_track, retitle_track, annotate, relabel_album, move_genre, change_role, add_artist,
                  add_track, add_track, drop_credit, delete_track)


def source(url: str, stream: str, workdir: Path, name: str, *options: str) -> AppProcess:
    return AppProcess(["cdc-postgres", "--stream", stream, "--label", "cdc", "--batch-size", "200", "--",
                       f"--url={url}", "--heartbeat-s=1", *options], workdir, name)


def table_rows(url: str, tables: tuple[str, ...] = TABLES) -> dict[tuple[str, bytes], Row]:
    rows: dict[tuple[str, bytes], Row] = {}
    with connect(url) as cursor:
        for table in tables:
            cursor.execute(f"SELECT * FROM {table}")
            columns, values = [c.name for c in cursor.description], cursor.fetchall()
            cursor.execute("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                           "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
                           (table,))
            key_columns = {name for (name,) in cursor.fetchall()}
            for row_values in values:
                row = orjson.loads(dumps(dict(zip(columns, row_values, strict=True))))
                rows[(table, canonical_json({k: v for k, v in row.items() if k in key_columns}))] = row
    return rows


def delivered(bootstrap: str, topic: str, xid: int) -> bool:
    return any(headers.get(TX_ID_HEADER) == str(xid).encode() for _, _, headers in read_topic(bootstrap, topic))


def confirmed_past(url: str, xid_commit_lsn: int) -> bool:
    with connect(url) as cursor:
        cursor.execute("SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots "
                       "WHERE database = current_database()")
        row = cursor.fetchone()
    return row is not None and row[0] is not None and int(row[0]) > xid_commit_lsn


def commit_lsn_of(bootstrap: str, topic: str, xid: int) -> int:
    return max(int(h[VERSION_HEADER]) for _, _, h in read_topic(bootstrap, topic) if int(h[TX_ID_HEADER]) == xid)


def test_the_topic_replays_into_the_tables_through_two_kills(database: str, kafka_bootstrap: str,
                                                             tmp_path: Path) -> None:
    stream = unique_name("tfcdc")
    topic = f"{stream}.cdc"
    create_topic(kafka_bootstrap, topic, 3)
    process = source(database, stream, tmp_path, "cdc").start()
    try:
        process.wait_ready()
        # Quiet phase: a bulk load (COPY) and changes, no kill; the source confirms all of it.
        generate_catalog(database, 300, mode="append", seed=7, chunk_size=100)
        quiet = Writer(database, 150, seed=1)
        quiet.run()
        assert quiet.error is None, quiet.error
        marker = quiet.committed[-1]
        wait_for(lambda: delivered(kafka_bootstrap, topic, marker), 60, "the quiet phase in Kafka", process)
        quiet_version = commit_lsn_of(kafka_bootstrap, topic, marker)
        wait_for(lambda: confirmed_past(database, quiet_version), 30, "the quiet phase confirmed", process)

        # Rough phase: the writer keeps writing while the source is killed twice and restarted.
        writer = Writer(database, 1200, seed=2)
        writer.start()
        for kill in range(2):
            time.sleep(2.5)
            process.kill9()
            time.sleep(0.5)
            process = source(database, stream, tmp_path, f"cdc-{kill + 1}").start()
            process.wait_ready()
        writer.join(120)
        assert writer.error is None, writer.error
        with connect(database) as cursor:  # a truncate, then rows of the truncated table again
            cursor.execute("TRUNCATE track_genre")
            cursor.execute("BEGIN")
            cursor.execute("INSERT INTO genre VALUES (9999, 'Pansori 판소리')")
            cursor.execute("INSERT INTO track_genre SELECT track_id, 9999 FROM track ORDER BY track_id LIMIT 5")
            cursor.execute("SELECT pg_current_xact_id()::text::bigint % 4294967296")
            last = cursor.fetchone()[0]
            cursor.execute("COMMIT")
        wait_for(lambda: delivered(kafka_bootstrap, topic, last), 60, "every change in Kafka", process)
        metrics = process.metrics()
    finally:
        process.stop()

    messages = read_topic(kafka_bootstrap, topic)
    expected = table_rows(database)
    assert checksums(replay(messages)) == checksums(expected)
    assert {table for table, _ in expected} == set(TABLES)
    assert sum(table == "track_genre" for table, _ in expected) == 5  # truncated, then 5 rows again

    # Every change arrived: each transaction's places run 1..n with `tf-tx-last` on n, and every writer
    # transaction is there; duplicates only of changes after the quiet phase, i.e. around the kills.
    places = Counter((int(h[TX_ID_HEADER]), versions((k, v, h))) for k, v, h in messages)
    by_tx: dict[int, set[int]] = {}
    lasts: dict[int, int] = {}
    for _, _, headers in messages:
        xid, seq = int(headers[TX_ID_HEADER]), int(headers[TX_SEQ_HEADER])
        by_tx.setdefault(xid, set()).add(seq)
        if TX_LAST_HEADER in headers:
            lasts[xid] = seq
    assert all(seqs == set(range(1, lasts[xid] + 1)) for xid, seqs in by_tx.items())
    assert set(quiet.committed + writer.committed) <= set(by_tx)
    duplicated = [place for place, count in places.items() if count > 1]
    assert all(version > quiet_version for _, (version, _) in duplicated)
    ops = Counter(orjson.loads(v)["op"] for _, v, _ in messages)
    assert ops["c"] > 1000 and ops["u"] > 300 and ops["d"] > 100 and ops["t"] == 1
    assert any(b'"unchanged":["notes"]' in v for _, v, _ in messages)  # identity DEFAULT: said, not nulled
    assert "tuneflow_cdc_retained_wal_bytes" in metrics


def test_a_wrong_password_is_refused_without_showing_it(database: str, kafka_bootstrap: str,
                                                        tmp_path: Path) -> None:
    secret = "not-the-password-" + "4c1d"
    base, _, rest = database.partition("://")
    credentials, _, where = rest.partition("@")
    wrong = f"{base}://{credentials.split(':')[0]}:{secret}@{where}"
    process = source(wrong, unique_name("tfcdc"), tmp_path, "refused").start()
    assert process.proc is not None
    assert process.proc.wait(60) != 0
    log = process.log_path.read_text()
    assert "password authentication failed" in log and secret not in log


def test_a_quiet_database_does_not_pin_wal_that_others_write(database: str, postgres_url: str,
                                                             kafka_bootstrap: str, tmp_path: Path) -> None:
    process = source(database, unique_name("tfcdc"), tmp_path, "quiet").start()
    try:
        process.wait_ready()
        with connect(postgres_url) as cursor:  # WAL written elsewhere on the server, none in this database
            cursor.execute("SELECT pg_logical_emit_message(false, 'tuneflow-test', repeat('x', 200000))")
            cursor.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
            written_to = int(cursor.fetchone()[0])
        wait_for(lambda: confirmed_past(database, written_to - 1), 30, "the slot to move past others' WAL", process)
        wait_for(lambda: metric_sum(process.metrics(), "tuneflow_cdc_retained_wal_bytes") > 0, 15,
                 "the retained WAL measured", process)
    finally:
        process.stop()


def test_table_names_are_checked_against_the_schema_before_anything_is_created(database: str,
                                                                               tmp_path: Path) -> None:
    process = AppProcess(["cdc-postgres", "--stream", unique_name("tfcdc"), "--",
                          f"--url={database}", '--tables=track,"track; DROP TABLE artist"'], tmp_path, "typo").start()
    assert process.proc is not None
    assert process.proc.wait(60) != 0
    log = process.log_path.read_text()
    assert 'no such table: "track; DROP TABLE artist" (tables here: album, album_artist, artist' in log
    with connect(database) as cursor:
        cursor.execute("SELECT (SELECT count(*) FROM pg_replication_slots WHERE database = current_database()), "
                       "(SELECT count(*) FROM pg_publication), to_regclass('artist') IS NOT NULL")
        assert cursor.fetchone() == (0, 0, True)


def test_the_password_appears_in_no_log_metric_or_record(database: str, kafka_bootstrap: str,
                                                         tmp_path: Path) -> None:
    role, secret = unique_name("tf_cdc_role"), "pw-" + unique_name("s3cr3t")
    stream = unique_name("tfcdc")
    with connect(database) as cursor:
        cursor.execute(f'CREATE ROLE "{role}" LOGIN REPLICATION PASSWORD %s', (secret,))
        cursor.execute(f'CREATE PUBLICATION "{stream}" FOR TABLE genre')  # a role that owns no table can use it
    try:
        base, _, rest = database.partition("://")
        url = f"{base}://{role}:{secret}@{rest.partition('@')[2]}"
        process = AppProcess(["cdc-postgres", "--stream", stream, "--label", "cdc", "--log-level", "DEBUG", "--",
                              f"--url={url}", "--tables=genre", f"--publication={stream}", "--heartbeat-s=1"],
                             tmp_path, "secret").start()
        try:
            process.wait_ready()
            with connect(database) as cursor:
                cursor.execute("INSERT INTO genre VALUES (1, 'Jazz') RETURNING "
                               "pg_current_xact_id()::text::bigint % 4294967296")
                xid = cursor.fetchone()[0]
            wait_for(lambda: delivered(kafka_bootstrap, f"{stream}.cdc", xid), 60, "the change in Kafka", process)
            metrics = process.metrics()
        finally:
            process.stop()
        outputs = [process.log_path.read_text(), metrics,
                   *(v.decode() for _, v, _ in read_topic(kafka_bootstrap, f"{stream}.cdc"))]
        assert "Jazz" in outputs[-1] and all(secret not in text for text in outputs)
    finally:
        with connect(database) as cursor:
            cursor.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                           "WHERE database = current_database()")
            cursor.execute(f'DROP ROLE "{role}"')


def capture_objects(url: str) -> tuple[list[str], list[str]]:
    with connect(url) as cursor:
        cursor.execute("SELECT slot_name FROM pg_replication_slots WHERE database = current_database()")
        slots = [name for (name,) in cursor.fetchall()]
        cursor.execute("SELECT pubname FROM pg_publication")
        return slots, [name for (name,) in cursor.fetchall()]


def test_stream_destroy_says_how_to_drop_the_slot_or_drops_it(database: str, mongo_uri: str,
                                                              tmp_path: Path) -> None:
    cli = Cli(tmp_path, mongo_uri)
    kept, dropped = unique_name("tfcdckept"), unique_name("tfcdcdrop")
    for stream in (kept, dropped):
        cli.ok("create", stream, "--definition", f"cdc-postgres --url={database} --tables=genre | log")
        cli.ok("deploy", stream)
    slot = f"tuneflow_{kept}_cdc_postgres"
    assert sorted(capture_objects(database)[0]) == sorted([slot, f"tuneflow_{dropped}_cdc_postgres"])

    said = cli.ok("destroy", kept)
    statements = f"SELECT pg_drop_replication_slot('{slot}'); DROP PUBLICATION IF EXISTS \"{slot}\";"
    assert said.splitlines()[-1].startswith(f"kept replication slot {slot} and publication {slot} on postgresql://")
    assert said.splitlines()[-1].endswith(f"; drop it with: {statements}")
    assert slot in capture_objects(database)[0]  # kept, as it says
    with connect(database) as cursor:  # the SQL it printed, as a user pastes it
        cursor.execute(statements)

    said = cli.ok("destroy", dropped, "--drop-cdc-slots")
    assert f"dropped replication slot tuneflow_{dropped}_cdc_postgres" in said
    assert capture_objects(database) == ([], [])
    assert cli.json("list") == []
