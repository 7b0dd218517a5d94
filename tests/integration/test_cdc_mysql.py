"""The `cdc-mysql` source on the real MariaDB and Kafka, run as a real process and `kill -9`ed twice while a writer
changes the catalog tables: applying the topic in version order (binlog position, then place in the transaction) to
an empty map reproduces every table row for row, with TINYINT(1) as booleans and DECIMAL, DATETIME(6), JSON and
4-byte UTF-8 text exact; every change arrives, duplicates only after a kill."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pymysql
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from sqlalchemy import create_engine

from streams.catalog.dburl import to_sqlalchemy_url
from streams.catalog.generator import generate_catalog
from streams.catalog.legacy import create_legacy_schema
from streams.cdc.binlog import position_number
from streams.cdc.mysql import _Connection
from streams.records import TX_ID_HEADER, TX_LAST_HEADER, TX_SEQ_HEADER, VERSION_HEADER
from streams.runtime.metrics import metric_sum
from streams.serde import canonical_json, dumps
from tests.integration.cdc_replay import (
    Row,
    checksums,
    replay,
    versions,
)
from tests.integration.pipeline import create_topic, produce, read_topic
from tests.integration.processes import AppProcess, wait_for
from tests.integration.services import scratch_database, service_url, unique_name

TABLES = ("artist", "album", "album_artist", "track", "track_artist", "genre", "track_genre")
# What the catalog lacks, to see each type come through exactly: money, a JSON document, text beyond the BMP.
EXTRA_COLUMNS = ("ALTER TABLE track ADD COLUMN price DECIMAL(20,6) NULL, ADD COLUMN meta JSON NULL",)
BOOLEAN_COLUMNS = {("track", "explicit")}
JSON_COLUMNS = {("track", "meta")}
KILLS, BATCH = 2, 200


@pytest.fixture
def database() -> Iterator[str]:
    with catalog_database() as url:
        yield url


@contextmanager
def catalog_database() -> Iterator[str]:
    """The legacy schema, empty, on a scratch database of the real MariaDB, with a DECIMAL and a JSON column."""
    with scratch_database(service_url("mariadb"), prefix="tf_cdc") as url:
        engine = create_engine(to_sqlalchemy_url(url))
        create_legacy_schema(engine)
        engine.dispose()
        with connect(url) as cursor:
            for statement in EXTRA_COLUMNS:
                cursor.execute(statement)
        yield url


class connect:
    def __init__(self, url: str) -> None:
        db = _Connection.from_url(url)
        self.connection = pymysql.connect(host=db.host, port=db.port, user=db.user, password=db.password,
                                          database=db.schema, charset="utf8mb4", autocommit=True)

    def __enter__(self) -> Any:
        return self.connection.cursor()

    def __exit__(self, *_: object) -> None:
        self.connection.close()


class Writer(threading.Thread):
    """Transactions of one to three changes of every kind, with the GTIDs of the transactions that changed rows."""

    def __init__(self, url: str, transactions: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.transactions = transactions
        self.rng = random.Random(seed)
        self.committed: list[str] = []
        self.changed = 0
        self.stopping = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with connect(self.url) as cursor:
                for _ in range(self.transactions):
                    if self.stopping:
                        break
                    self.changed = 0
                    cursor.execute("BEGIN")
                    for _ in range(self.rng.randint(1, 3)):
                        self.rng.choice(self.OPERATIONS)(self, cursor)
                    cursor.execute("COMMIT")
                    if self.changed:
                        cursor.execute("SELECT @@last_gtid")
                        self.committed.append(cursor.fetchone()[0])
                    time.sleep(0.002)
        except BaseException as exc:
            self.error = exc

    def change(self, cursor: Any, statement: str, parameters: tuple[Any, ...] = ()) -> None:
        self.changed += cursor.execute(statement, parameters)

    def pick(self, cursor: Any, table: str, columns: str) -> tuple[Any, ...] | None:
        cursor.execute(f"SELECT {columns} FROM {table} ORDER BY RAND({self.rng.randint(0, 1 << 30)}) LIMIT 1")
        row: tuple[Any, ...] | None = cursor.fetchone()
        return row

    def retitle_track(self, cursor: Any) -> None:  # emoji, a price to the micro-unit, a timestamp to the microsecond
        if row := self.pick(cursor, "track", "track_id"):
            price = Decimal(self.rng.randint(0, 10**12)) / 10**6
            self.change(cursor, "UPDATE track SET title = CONCAT(LEFT(title, 400), ' 🎵𝄞'), price = %s, "
                        "explicit = NOT explicit, updated_at = %s WHERE track_id = %s",
                        (price, f"2024-02-20 09:00:00.{self.rng.randint(0, 999_999):06d}", row[0]))

    def tag_track(self, cursor: Any) -> None:
        if row := self.pick(cursor, "track", "track_id"):
            meta = {"mood": self.rng.choice(["😀", "calme", "차분한"]), "bpm": self.rng.randint(60, 200),
                    "tags": ["a", {"nested": [1, 2.5, None, True]}], "big": 12345678901234567}
            self.change(cursor, "UPDATE track SET meta = %s WHERE track_id = %s", (orjson.dumps(meta), row[0]))

    def change_your_mind(self, cursor: Any) -> None:  # savepoints are logged inside the transaction
        track, album = self.pick(cursor, "track", "track_id"), self.pick(cursor, "album", "album_id")
        if track and album:
            cursor.execute("SAVEPOINT first_thought")
            cursor.execute("UPDATE track SET title = 'never seen' WHERE track_id = %s", track)
            cursor.execute("ROLLBACK TO SAVEPOINT first_thought")
            cursor.execute("SAVEPOINT second_thought")
            self.change(cursor, "UPDATE album SET label = 'Second thought' WHERE album_id = %s", album)
            cursor.execute("RELEASE SAVEPOINT second_thought")

    def relabel_album(self, cursor: Any) -> None:
        if row := self.pick(cursor, "album", "album_id"):
            self.change(cursor, "UPDATE album SET label = CONCAT('Label ', MD5(RAND())) WHERE album_id = %s", row)

    def move_genre(self, cursor: Any) -> None:  # a primary-key change
        link, genre = self.pick(cursor, "track_genre", "track_id, genre_id"), self.pick(cursor, "genre", "genre_id")
        if link and genre:
            self.change(cursor, "UPDATE IGNORE track_genre SET genre_id = %s WHERE track_id = %s AND genre_id = %s",
                        (genre[0], *link))

    def change_role(self, cursor: Any) -> None:  # a primary-key change of a three-column key
        role = self.rng.choice(("FEATURED", "COMPOSER", "LYRICIST", "ARRANGER"))
        if link := self.pick(cursor, "track_artist", "track_id, artist_id, role"):
            self.change(cursor, "UPDATE IGNORE track_artist SET role = %s WHERE track_id = %s AND artist_id = %s "
                        "AND role = %s", (role, *link))

    def add_artist(self, cursor: Any) -> None:
        self.change(cursor, "INSERT INTO artist SELECT MAX(artist_id) + 1, CONCAT('Új 새 artist 👩‍🎤 ', COUNT(*)), "
                    "'KR', 2001, NOW(6) FROM artist")

    def add_track(self, cursor: Any) -> None:
        if album := self.pick(cursor, "album", "album_id"):
            self.change(cursor, "INSERT INTO track (track_id, album_id, title, track_no, explicit, updated_at, price) "
                        "SELECT COALESCE(MAX(track_id), 0) + 1, %s, CONCAT('Nueva canción ', COUNT(*)), 1, %s, "
                        "NOW(6), 0.000001 FROM track", (album[0], self.rng.random() < 0.5))

    def drop_credit(self, cursor: Any) -> None:
        if link := self.pick(cursor, "track_artist", "track_id, artist_id, role"):
            self.change(cursor, "DELETE FROM track_artist WHERE track_id = %s AND artist_id = %s AND role = %s",
                        link)

    def delete_track(self, cursor: Any) -> None:
        if row := self.pick(cursor, "track", "track_id"):
            for table in ("track_genre", "track_artist", "track"):
                self.change(cursor, f"DELETE FROM {table} WHERE track_id = %s", row)

    OPERATIONS = (retitle_track, retitle_track, tag_track, change_your_mind, relabel_album, move_genre, change_role,
                  add_artist, add_track, add_track, drop_credit, delete_track)


def source(url: str, stream: str, workdir: Path, name: str, *options: str, batch: int = BATCH) -> AppProcess:
    return AppProcess(["cdc-mysql", "--stream", stream, "--label", "cdc", "--batch-size", str(batch), "--",
                       f"--url={url}", *options], workdir, name)


def table_rows(url: str, tables: tuple[str, ...] = TABLES) -> dict[tuple[str, bytes], Row]:
    """Every row as the database holds it, in the JSON the records use: booleans, JSON values, exact decimals."""
    rows: dict[tuple[str, bytes], Row] = {}
    with connect(url) as cursor:
        for table in tables:
            cursor.execute(f"SELECT * FROM {table}")
            columns, values = [c[0] for c in cursor.description], cursor.fetchall()
            cursor.execute("SELECT column_name FROM information_schema.key_column_usage WHERE table_schema = "
                           "DATABASE() AND table_name = %s AND constraint_name = 'PRIMARY'", (table,))
            key_columns = {name for (name,) in cursor.fetchall()}
            for row_values in values:
                row = dict(zip(columns, row_values, strict=True))
                for column in row:
                    if (table, column) in BOOLEAN_COLUMNS:
                        row[column] = bool(row[column])
                    elif (table, column) in JSON_COLUMNS and row[column] is not None:
                        row[column] = orjson.loads(row[column])
                plain = orjson.loads(dumps(row))
                rows[(table, canonical_json({k: v for k, v in plain.items() if k in key_columns}))] = plain
    return rows


def gtid_of(database: str, statement: str) -> str:
    """Run one statement in a transaction of its own; the GTID that transaction got."""
    with connect(database) as cursor:
        cursor.execute(statement)
        cursor.execute("SELECT @@last_gtid")
        return str(cursor.fetchone()[0])


def delivered(bootstrap: str, topic: str, gtid: str) -> bool:
    return any(headers.get(TX_ID_HEADER, b"").decode() == gtid for _, _, headers in read_topic(bootstrap, topic))


def version_of(bootstrap: str, topic: str, gtid: str) -> int:
    return max(int(h[VERSION_HEADER]) for _, _, h in read_topic(bootstrap, topic) if h[TX_ID_HEADER].decode() == gtid)


def saved_position(bootstrap: str, stream: str) -> int:
    """The last position the source recorded as done, as a number comparable with `tf-version`."""
    position = orjson.loads(read_topic(bootstrap, f"{stream}.cdc.offsets")[-1][1])
    return position_number(position["file"], position["pos"])


def test_the_topic_replays_into_the_tables_through_two_kills(database: str, kafka_bootstrap: str,
                                                             tmp_path: Path) -> None:
    stream = unique_name("tfcdcm")
    topic = f"{stream}.cdc"
    create_topic(kafka_bootstrap, topic, 3)
    process = source(database, stream, tmp_path, "cdc").start()
    try:
        process.wait_ready()
        # Quiet phase: a bulk load and changes, no kill; the source records its position past all of it.
        generate_catalog(database, 300, mode="append", seed=7, chunk_size=100)
        quiet = Writer(database, 150, seed=1)
        quiet.run()
        assert quiet.error is None, quiet.error
        marker = quiet.committed[-1]
        wait_for(lambda: delivered(kafka_bootstrap, topic, marker), 60, "the quiet phase in Kafka", process)
        quiet_version = version_of(kafka_bootstrap, topic, marker)
        wait_for(lambda: saved_position(kafka_bootstrap, stream) > quiet_version, 30,
                 "the quiet phase's position saved", process)

        # Rough phase: the writer keeps writing while the source is killed twice and restarted.
        writer = Writer(database, 1200, seed=2)
        writer.start()
        for kill in range(KILLS):
            time.sleep(2.5)
            process.kill9()
            time.sleep(0.5)
            process = source(database, stream, tmp_path, f"cdc-{kill + 1}").start()
            process.wait_ready()
        writer.join(120)
        assert writer.error is None, writer.error
        with connect(database) as cursor:  # a truncate, then rows of the truncated table again
            cursor.execute("TRUNCATE TABLE track_genre")
            cursor.execute("BEGIN")
            cursor.execute("INSERT INTO genre VALUES (9999, 'Pansori 판소리 🥁')")
            cursor.execute("INSERT INTO track_genre SELECT track_id, 9999 FROM track ORDER BY track_id LIMIT 5")
            cursor.execute("COMMIT")
            cursor.execute("SELECT @@last_gtid")
            last = cursor.fetchone()[0]
        wait_for(lambda: delivered(kafka_bootstrap, topic, last), 60, "every change in Kafka", process)

        # Undeploy and deploy again (SIGTERM, then a new process): it resumes exactly where it stopped.
        assert process.stop() == 0
        before_redeploy = len(read_topic(kafka_bootstrap, topic))
        process = source(database, stream, tmp_path, "cdc-redeployed").start()
        process.wait_ready()
        after_redeploy = gtid_of(database, "UPDATE genre SET name = 'Pansori 판소리 🪘' WHERE genre_id = 9999")
        wait_for(lambda: delivered(kafka_bootstrap, topic, after_redeploy), 60, "the change after redeploy", process)
    finally:
        process.stop()

    messages = read_topic(kafka_bootstrap, topic)
    assert len(messages) == before_redeploy + 1  # nothing read twice across a graceful stop
    expected = table_rows(database)
    assert checksums(replay(messages)) == checksums(expected)
    assert {table for table, _ in expected} == set(TABLES)
    assert sum(table == "track_genre" for table, _ in expected) == 5  # truncated, then 5 rows again
    tracks = [row for (table, _), row in expected.items() if table == "track"]
    assert {type(row["explicit"]) for row in tracks} == {bool}
    assert any(row["meta"] and row["meta"]["big"] == 12345678901234567 for row in tracks)
    assert any("🎵𝄞" in row["title"] and "." in row["price"] for row in tracks)
    assert any(row["updated_at"].endswith("Z") and len(row["updated_at"]) == 27 for row in tracks)

    # Every change arrived: each transaction's places run 1..n with `tf-tx-last` on n, and every writer
    # transaction is there; duplicates only of changes after the quiet phase, i.e. around the kills.
    places = Counter((h[TX_ID_HEADER], versions((k, v, h))) for k, v, h in messages)
    by_tx: dict[bytes, set[int]] = {}
    lasts: dict[bytes, int] = {}
    for _, _, headers in messages:
        txid, seq = headers[TX_ID_HEADER], int(headers[TX_SEQ_HEADER])
        by_tx.setdefault(txid, set()).add(seq)
        if TX_LAST_HEADER in headers:
            lasts[txid] = seq
    assert all(seqs == set(range(1, lasts[txid] + 1)) for txid, seqs in by_tx.items())
    assert {g.encode() for g in quiet.committed + writer.committed} <= set(by_tx)
    duplicated = [place for place, count in places.items() if count > 1]
    assert all(version > quiet_version for _, (version, _) in duplicated)
    # What a kill re-reads: the batch Kafka had not acknowledged, and the one whose position was still in flight.
    assert sum(count - 1 for count in places.values()) <= KILLS * 2 * BATCH
    ops = Counter(orjson.loads(v)["op"] for _, v, _ in messages)
    assert ops["c"] > 1000 and ops["u"] > 300 and ops["d"] > 100 and ops["t"] == 1
    assert not any(b"never seen" in v for _, v, _ in messages)  # rolled back to a savepoint
    resource = ConfigResource("topic", f"{stream}.cdc.offsets")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    described = admin.describe_configs([resource])[resource].result(30)
    assert described["cleanup.policy"].value == "compact"  # only the last position is kept


def test_a_wrong_password_is_refused_without_showing_it(database: str, tmp_path: Path) -> None:
    secret = "not-the-password-" + "4c1d"
    base, _, rest = database.partition("://")
    credentials, _, where = rest.partition("@")
    wrong = f"{base}://{credentials.split(':')[0]}:{secret}@{where}"
    process = source(wrong, unique_name("tfcdcm"), tmp_path, "refused").start()
    assert process.proc is not None
    assert process.proc.wait(60) != 0
    log = process.log_path.read_text()
    assert "Access denied" in log and secret not in log


def test_table_names_are_checked_against_the_schema(database: str, tmp_path: Path) -> None:
    process = source(database, unique_name("tfcdcm"), tmp_path, "typo", "--tables=track,track; DROP TABLE artist")
    process.start()
    assert process.proc is not None
    assert process.proc.wait(60) != 0
    log = process.log_path.read_text()
    assert "no table 'track; DROP TABLE artist'" in log and "(it has: album, album_artist, artist" in log
    with connect(database) as cursor:
        cursor.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()")
        assert cursor.fetchone() == (7,)


def test_a_quiet_database_still_moves_its_position_past_what_others_write(database: str, kafka_bootstrap: str,
                                                                           tmp_path: Path) -> None:
    stream = unique_name("tfcdcm")
    process = source(database, stream, tmp_path, "quiet").start()
    try:
        process.wait_ready()
        first = saved_position(kafka_bootstrap, stream)
        with scratch_database(service_url("mariadb"), prefix="tf_cdc_other") as other, connect(other) as cursor:
            cursor.execute("CREATE TABLE busy (id INT PRIMARY KEY)")
            cursor.execute("INSERT INTO busy VALUES (1), (2), (3)")
            cursor.execute("SHOW MASTER STATUS")
            file, pos = cursor.fetchone()[:2]
        wait_for(lambda: saved_position(kafka_bootstrap, stream) >= position_number(file, pos), 30,
                 "the position to move past others' binlog", process)
        assert saved_position(kafka_bootstrap, stream) > first
        assert read_topic(kafka_bootstrap, f"{stream}.cdc") == []
        # The metric shows the position last known to be stored in Kafka, as tf-version numbers it (other databases
        # of the server may move it on meanwhile).
        wait_for(lambda: position_number(file, pos) <= metric_sum(process.metrics(), "tuneflow_cdc_confirmed_position")
                 <= saved_position(kafka_bootstrap, stream), 15, "the stored position in the metric", process)
    finally:
        process.stop()


def test_a_position_the_server_no_longer_has_is_refused_with_the_reason(database: str, kafka_bootstrap: str,
                                                                        tmp_path: Path) -> None:
    stream = unique_name("tfcdcm")
    produce(kafka_bootstrap, f"{stream}.cdc.offsets",
            [(b"position", orjson.dumps({"file": "binlog.999999", "pos": 4, "gtid": None}), None)])
    process = source(database, stream, tmp_path, "purged").start()
    assert process.proc is not None
    assert process.proc.wait(60) != 0
    log = process.log_path.read_text()
    assert "binlog.999999:4" in log and "The server no longer has that binlog" in log


def test_each_type_comes_out_exact(database: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    with connect(database) as cursor:
        cursor.execute(
            "CREATE TABLE kinds (id BIGINT UNSIGNED PRIMARY KEY, flag BOOLEAN, tiny TINYINT, money DECIMAL(30,10), "
            "ratio DOUBLE, born DATE, at DATETIME(6), stamp TIMESTAMP(6) NULL, span TIME(3), yr YEAR, "
            "mood ENUM('calm','loud'), days SET('mon','tue','wed'), doc JSON, name VARCHAR(50), code CHAR(3), "
            "raw VARBINARY(8), body MEDIUMTEXT) DEFAULT CHARSET=utf8mb4")
    stream = unique_name("tfcdcm")
    process = source(database, stream, tmp_path, "kinds", "--tables=kinds").start()
    try:
        process.wait_ready()
        with connect(database) as cursor:
            cursor.execute("SET time_zone = '+00:00'")
            cursor.execute(
                "INSERT INTO kinds VALUES (18446744073709551615, TRUE, -128, -12345678901234567890.0123456789, 0.1, "
                "'2024-02-29', '2024-02-20 09:00:00.000001', '2038-01-19 03:14:07.999999', '-838:59:58.5', 2155, "
                "'loud', 'tue,mon', '{\"k\": [1, 2.5, \"😀\", null, {\"d\": 1e-7}]}', 'Ünïcødé 👩‍🎤 𝄞', 'abc', "
                "X'00FF10', REPEAT('가사 ', 5000))")
        wait_for(lambda: len(read_topic(kafka_bootstrap, f"{stream}.cdc")) == 1, 30, "the row in Kafka", process)
    finally:
        process.stop()
    after = orjson.loads(read_topic(kafka_bootstrap, f"{stream}.cdc")[0][1])["after"]
    assert after == {
        "id": 18446744073709551615, "flag": True, "tiny": -128, "money": "-12345678901234567890.0123456789",
        "ratio": 0.1, "born": "2024-02-29", "at": "2024-02-20T09:00:00.000001Z",
        "stamp": "2038-01-19T03:14:07.999999Z", "span": "-838:59:58.500000", "yr": 2155, "mood": "loud",
        "days": ["mon", "tue"], "doc": {"k": [1, 2.5, "😀", None, {"d": 1e-7}]}, "name": "Ünïcødé 👩‍🎤 𝄞",
        "code": "abc", "raw": "AP8Q", "body": "가사 " * 5000}


def test_a_dropped_server_connection_resumes_where_it_was(database: str, kafka_bootstrap: str,
                                                           tmp_path: Path) -> None:
    stream = unique_name("tfcdcm")
    topic = f"{stream}.cdc"
    process = source(database, stream, tmp_path, "dropped").start()
    try:
        process.wait_ready()
        generate_catalog(database, 50, mode="append", seed=3, chunk_size=50)
        first = Writer(database, 100, seed=5)
        first.run()
        wait_for(lambda: delivered(kafka_bootstrap, topic, first.committed[-1]), 60, "the first changes", process)
        assert process.proc is not None
        assert kill_connections_of(process.proc.pid) >= 1  # the binlog stream and its control connection
        second = Writer(database, 100, seed=6)
        second.run()
        assert first.error is None and second.error is None
        wait_for(lambda: delivered(kafka_bootstrap, topic, second.committed[-1]), 60, "the later changes", process)
    finally:
        process.stop()
    messages = read_topic(kafka_bootstrap, topic)
    assert checksums(replay(messages)) == checksums(table_rows(database))
    places = Counter((h[TX_ID_HEADER], versions((k, v, h))) for k, v, h in messages)
    assert max(places.values()) == 1  # nothing read twice: it resumed where it was
    log = process.log_path.read_text()  # mysql-replication reconnects by itself, else the source does
    assert "Re-request the connection" in log or "lost the binlog stream" in log


def kill_connections_of(pid: int) -> int:
    """Make the server drop every connection the process `pid` holds to it (found by their client ports)."""
    sockets = subprocess.run(["ss", "-tnpH", "state", "established", "( dport = :3306 )"], capture_output=True,
                             text=True, check=True).stdout
    ports = {line.split()[2].rsplit(":", 1)[1] for line in sockets.splitlines() if f"pid={pid}," in line}
    killed = 0
    with connect(service_url("mariadb")) as cursor:
        cursor.execute("SELECT id, host FROM information_schema.processlist")
        for thread, host in cursor.fetchall():
            if str(host).rsplit(":", 1)[-1] in ports:
                cursor.execute(f"KILL {int(thread)}")
                killed += 1
    return killed


# -- the initial snapshot -----------------------------------------------------------------------------------------
