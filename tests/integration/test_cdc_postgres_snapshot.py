"""The `cdc-postgres` source's initial snapshot on the real PostgreSQL and Kafka: interrupted and resumed, parallel
readers, `--snapshot=always`, and a 200,000-track catalog under a writer, undeployed and redeployed."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.catalog.generator import generate_catalog
from streams.records import VERSION_HEADER
from streams.runtime.metrics import metric_sum
from streams.serde import canonical_json
from tests.integration.cdc_replay import (
    checksums,
    guarded_replay,
)
from tests.integration.cdc_snapshot_story import Source, snapshot_under_a_writer_converges_and_is_never_repeated
from tests.integration.pipeline import create_topic, read_topic
from tests.integration.processes import AppProcess, wait_for
from tests.integration.services import unique_name
from tests.integration.test_cdc_postgres import (
    LYRICS,
    Writer,
    cdc_database,
    connect,
    delivered,
    source,
    table_rows,
)


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    with cdc_database(postgres_url) as url:
        yield url


def progress_of(bootstrap: str, topic: str) -> dict[str, Any] | None:
    states = [orjson.loads(value) for _, value, _ in read_topic(bootstrap, f"{topic}.snapshot")]
    return states[-1] if states else None


def catalog_and_topic(database: str, bootstrap: str, tracks: int, seed: int) -> tuple[str, str]:
    """A catalog of `tracks` in the tables, and a new stream's name and output topic."""
    generate_catalog(database, tracks, mode="append", seed=seed, chunk_size=500)
    stream = unique_name("tfcdc")
    create_topic(bootstrap, f"{stream}.cdc", 3)
    return stream, f"{stream}.cdc"


def wait_for_snapshot_done(bootstrap: str, topic: str, process: AppProcess) -> None:
    wait_for(lambda: (progress_of(bootstrap, topic) or {}).get("done", False), 90, "the snapshot finished", process)


def insert_and_wait_delivered(database: str, bootstrap: str, topic: str, genre: tuple[int, str],
                              process: AppProcess) -> None:
    """A last change, written now, is in the topic: everything before it is too."""
    with connect(database) as cursor:
        cursor.execute("INSERT INTO genre VALUES (%s, %s) RETURNING pg_current_xact_id()::text::bigint %% 4294967296",
                       genre)
        last = cursor.fetchone()[0]
    wait_for(lambda: delivered(bootstrap, topic, last), 60, "the last change in Kafka", process)


def test_an_interrupted_initial_snapshot_resumes_and_converges_with_live_changes(database: str, kafka_bootstrap: str,
                                                                                tmp_path: Path) -> None:
    # Enough rows, in small chunks, read by one reader, that the snapshot takes seconds: the kill that follows its
    # first 300 rows lands mid-snapshot however fast the machine (1,500 tracks with 2 readers took 0.47 s).
    stream, topic = catalog_and_topic(database, kafka_bootstrap, 6000, seed=11)
    snapshot = ["--snapshot=initial", "--snapshot-chunk=20", "--snapshot-parallel=1"]
    writer = Writer(database, 500, seed=3)
    writer.start()
    process = source(database, stream, tmp_path, "snap", *snapshot).start()
    try:
        process.wait_ready()
        deadline = time.monotonic() + 60
        while metric_sum(process.metrics(), "tuneflow_cdc_snapshot_rows_total") < 300:
            assert time.monotonic() < deadline, process.log_tail()
            time.sleep(0.05)
        process.kill9()  # mid-snapshot
        assert not (progress_of(kafka_bootstrap, topic) or {}).get("done")
        process = source(database, stream, tmp_path, "snap-1", *snapshot).start()
        process.wait_ready()
        wait_for_snapshot_done(kafka_bootstrap, topic, process)
        assert "resuming the initial snapshot" in process.log_path.read_text()
        writer.join(120)
        assert writer.error is None, writer.error
        process.stop()  # a redeploy: the finished snapshot is not read again
        snapshot_rows = sum(b'"op":"r"' in v for _, v, _ in read_topic(kafka_bootstrap, topic))
        process = source(database, stream, tmp_path, "snap-2", *snapshot).start()
        process.wait_ready()
        insert_and_wait_delivered(database, kafka_bootstrap, topic, (9999, "Fado"), process)
    finally:
        process.stop()

    messages = read_topic(kafka_bootstrap, topic)
    assert sum(b'"op":"r"' in v for _, v, _ in messages) == snapshot_rows
    assert checksums(guarded_replay(messages)) == checksums(table_rows(database))


def snapshot_records(bootstrap: str, topic: str) -> Counter[str]:
    return Counter(orjson.loads(v)["table"] for _, v, _ in read_topic(bootstrap, topic) if b'"op":"r"' in v)


def test_parallel_snapshot_readers_read_every_row_once_in_one_snapshot(database: str, kafka_bootstrap: str,
                                                                      tmp_path: Path) -> None:
    stream, topic = catalog_and_topic(database, kafka_bootstrap, 1200, seed=12)
    writer = Writer(database, 300, seed=5)
    writer.start()
    process = source(database, stream, tmp_path, "parallel", "--snapshot=initial", "--snapshot-parallel=3",
                     "--snapshot-chunk=50").start()
    try:
        process.wait_ready()
        wait_for_snapshot_done(kafka_bootstrap, topic, process)
        writer.join(120)
        assert writer.error is None, writer.error
        insert_and_wait_delivered(database, kafka_bootstrap, topic, (9998, "Morna"), process)
    finally:
        process.stop()

    assert "the initial snapshot at LSN" in process.log_path.read_text()
    assert "with 3 readers" in process.log_path.read_text()
    bounds = progress_of(kafka_bootstrap, topic)["bounds"]  # type: ignore[index]
    assert len(bounds["track"]) == 2  # the biggest table read in three parts
    messages = read_topic(kafka_bootstrap, topic)
    keys = [(orjson.loads(v)["table"], canonical_json(orjson.loads(v)["key"])) for _, v, _ in messages
            if b'"op":"r"' in v]
    assert len(keys) == len(set(keys))  # no row read twice by two readers
    versions_of_r = {int(h[VERSION_HEADER]) for _, v, h in messages if b'"op":"r"' in v}
    assert len(versions_of_r) == 1  # all in the one exported snapshot
    assert checksums(guarded_replay(messages)) == checksums(table_rows(database))


def test_snapshot_always_reads_the_tables_again_at_every_start(database: str, kafka_bootstrap: str,
                                                               tmp_path: Path) -> None:
    stream, topic = catalog_and_topic(database, kafka_bootstrap, 300, seed=13)
    rows = sum(1 for _ in table_rows(database))
    for run in range(2):
        process = source(database, stream, tmp_path, f"always-{run}", "--snapshot=always").start()
        try:
            process.wait_ready()
            wait_for(lambda run=run: sum(snapshot_records(kafka_bootstrap, topic).values()) >= rows * (run + 1)
                     and (progress_of(kafka_bootstrap, topic) or {}).get("done", False), 90,
                     "the snapshot read again", process)
        finally:
            process.stop()
        assert "starting the initial snapshot" in process.log_path.read_text()
    with connect(database) as cursor:
        cursor.execute("UPDATE genre SET name = name || '!' WHERE genre_id = (SELECT min(genre_id) FROM genre)")
    process = source(database, stream, tmp_path, "always-2", "--snapshot=always").start()
    try:
        process.wait_ready()
        wait_for(lambda: sum(snapshot_records(kafka_bootstrap, topic).values()) >= rows * 3, 90,
                 "a third read", process)
    finally:
        process.stop()
    messages = read_topic(kafka_bootstrap, topic)
    assert sum(snapshot_records(kafka_bootstrap, topic).values()) == rows * 3
    assert checksums(guarded_replay(messages)) == checksums(table_rows(database))


class KeyedWriter(Writer):
    """The writer's kinds of change on the catalog's entities, each picking its row by a random value of the first
    key column (an index lookup, where ORDER BY random() reads a whole large table for every pick)."""

    def __init__(self, url: str, transactions: int, seed: int) -> None:
        super().__init__(url, transactions, seed)
        with connect(url) as cursor:
            cursor.execute("SELECT (SELECT max(track_id) FROM track), (SELECT max(album_id) FROM album), "
                           "(SELECT max(artist_id) FROM artist)")
            self.top = dict(zip(("track", "album", "artist"), cursor.fetchone(), strict=True))

    def row(self, table: str, columns: str) -> str:
        first = columns.split(",")[0]
        value = self.rng.randint(1, self.top[table.split("_")[0]])
        return f"(SELECT {columns} FROM {table} WHERE {first} >= {value} ORDER BY {first} LIMIT 1)"

    def retitle_track(self, cursor: Any) -> None:  # leaves `notes` (TOASTed) untouched
        self.change(cursor, "UPDATE track SET title = title || '·', duration_ms = duration_ms + 1 "
                    f"WHERE track_id = {self.row('track', 'track_id')}")

    def annotate(self, cursor: Any) -> None:
        table, key = self.rng.choice((("track", "track_id"), ("album", "album_id")))
        self.change(cursor, f"UPDATE {table} SET notes = %s WHERE {key} = {self.row(table, key)}",
                    (LYRICS + str(self.rng.random()),))

    def relabel_album(self, cursor: Any) -> None:  # FULL identity, `notes` untouched
        self.change(cursor, "UPDATE album SET label = 'Label ' || md5(random()::text) "
                    f"WHERE album_id = {self.row('album', 'album_id')}")

    def credit_another_artist(self, cursor: Any) -> None:  # a primary-key change
        artist = self.rng.randint(1, self.top["artist"])
        self.change(cursor, f"UPDATE album_artist aa SET artist_id = {artist} WHERE (aa.album_id, aa.artist_id) = "
                    f"{self.row('album_artist', 'album_id, artist_id')} AND NOT EXISTS (SELECT 1 FROM album_artist x "
                    f"WHERE x.album_id = aa.album_id AND x.artist_id = {artist})")

    def add_track(self, cursor: Any) -> None:
        self.change(cursor, "INSERT INTO track (track_id, album_id, title, track_no, updated_at) SELECT "
                    f"max(track_id) + 1, {self.row('album', 'album_id')}, 'Nueva canción', 1, now() FROM track")

    def delete_track(self, cursor: Any) -> None:
        cursor.execute(f"SELECT {self.row('track', 'track_id')}")
        row = cursor.fetchone()
        if row is not None and row[0] is not None:
            for table in ("track_genre", "track_artist", "track"):
                self.change(cursor, f"DELETE FROM {table} WHERE track_id = %s", row)

    OPERATIONS = (retitle_track, retitle_track, annotate, relabel_album, credit_another_artist, Writer.add_artist,
                  add_track, add_track, delete_track)


# The catalog's entities (the credit and genre links, 890,000 more rows at this size, are followed in the tests above).
ENTITIES = ("artist", "album", "album_artist", "track", "genre")


def test_an_initial_snapshot_of_200000_tracks_converges_with_live_changes_and_is_never_repeated(
        database: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    stream, topic = catalog_and_topic(database, kafka_bootstrap, 200_000, seed=21)
    snapshot = ["--snapshot=initial", "--snapshot-parallel=2", f"--tables={','.join(ENTITIES)}"]
    source = Source(
        start=lambda label: AppProcess(["cdc-postgres", "--stream", stream, "--label", "cdc", "--batch-size", "2000",
                                        "--", f"--url={database}", "--heartbeat-s=1", *snapshot], tmp_path,
                                       label).start(),
        snapshot_done=lambda process: wait_for_snapshot_done(kafka_bootstrap, topic, process),
        while_away=["UPDATE genre SET name = name || ' ⏸' WHERE genre_id = (SELECT min(genre_id) FROM genre)",
                    "DELETE FROM album_artist WHERE album_id = (SELECT min(album_id) FROM album_artist)"],
        connect=connect, table_rows=table_rows, started="starting the initial snapshot at LSN")
    snapshot_under_a_writer_converges_and_is_never_repeated(  # 200,000 tracks and their entities: 266,000 rows
        database, kafka_bootstrap, topic, KeyedWriter(database, 1_000_000, seed=8), source, ENTITIES, 265_000)
