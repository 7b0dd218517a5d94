"""`cdc-postgres | assemble | mongo` on the real PostgreSQL, Kafka and FerretDB: a small catalog read by the initial
snapshot, then a writer changing tracks, albums, artists, credits and genres (tracks moving albums, tracks deleted);
once the stream is quiet, every document of `tracks`, `albums` and `artists` equals the template's read of the final
tables, and nothing went to a dead-letter topic."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from pymongo import MongoClient
from sqlalchemy import create_engine

from streams.catalog.dburl import to_sqlalchemy_url
from streams.catalog.generator import generate_catalog
from streams.catalog.legacy import create_legacy_schema
from streams.migration.source import bind_template
from streams.migration.template import catalog_template_path, load_template
from streams.migration.template_reader import KeyRange
from streams.serde import business_fields
from tests.integration.pipeline import create_topic, read_topic, running
from tests.integration.processes import AppProcess, wait_for
from tests.integration.services import drop_captures, scratch_database, unique_name

COLLECTIONS = ("tracks", "albums", "artists")


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """The legacy catalog, 120 tracks; `track` ties rows to albums by a column outside its key: identity FULL."""
    with scratch_database(postgres_url, prefix="tf_asm") as url:
        engine = create_engine(to_sqlalchemy_url(url))
        create_legacy_schema(engine)
        engine.dispose()
        generate_catalog(url, 120, mode="append", seed=5, chunk_size=60)
        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute("ALTER TABLE track REPLICA IDENTITY FULL")
        try:
            yield url
        finally:
            drop_captures(url)


class Writer(threading.Thread):
    """Transactions of one to three changes across the catalog's tables."""

    def __init__(self, url: str, transactions: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.url, self.transactions, self.rng = url, transactions, random.Random(seed)
        self.error: BaseException | None = None
        self.pause_s = 0.003

    def run(self) -> None:
        connection = psycopg2.connect(self.url)
        try:
            with connection.cursor() as cursor:
                for _ in range(self.transactions):
                    for _ in range(self.rng.randint(1, 3)):
                        cursor.execute(*self.rng.choice(self.STATEMENTS))
                    connection.commit()
                    time.sleep(self.pause_s)
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()

    STATEMENTS: tuple[tuple[str, ...], ...] = (
        ("UPDATE track SET title = title || '·', updated_at = now() WHERE track_id = "
         "(SELECT track_id FROM track ORDER BY random() LIMIT 1)",),
        ("UPDATE track SET album_id = (SELECT album_id FROM album ORDER BY random() LIMIT 1) WHERE track_id = "
         "(SELECT track_id FROM track ORDER BY random() LIMIT 1)",),
        ("UPDATE album SET title = 'Álbum ' || md5(random()::text), updated_at = now() WHERE album_id = "
         "(SELECT album_id FROM album ORDER BY random() LIMIT 1)",),
        ("UPDATE artist SET name = 'Artist ' || md5(random()::text) WHERE artist_id = "
         "(SELECT artist_id FROM artist ORDER BY random() LIMIT 1)",),
        ("UPDATE genre SET name = 'Genre ' || md5(random()::text) WHERE genre_id = "
         "(SELECT genre_id FROM genre ORDER BY random() LIMIT 1)",),
        ("DELETE FROM track_artist WHERE ctid = (SELECT ctid FROM track_artist ORDER BY random() LIMIT 1) "
         "AND (SELECT count(*) FROM track_artist) > 50",),
        ("INSERT INTO track_artist SELECT t.track_id, a.artist_id, 'FEATURED', 9 FROM "
         "(SELECT track_id FROM track ORDER BY random() LIMIT 1) t, (SELECT artist_id FROM artist ORDER BY random() "
         "LIMIT 1) a ON CONFLICT DO NOTHING",),
        ("INSERT INTO track (track_id, album_id, title, track_no, updated_at) SELECT max(track_id) + 1, "
         "(SELECT album_id FROM album ORDER BY random() LIMIT 1), 'Nueva ' || count(*), 1, now() FROM track",),
        ("WITH gone AS (SELECT track_id FROM track ORDER BY random() LIMIT 1), "
         "a AS (DELETE FROM track_artist WHERE track_id IN (SELECT track_id FROM gone)), "
         "g AS (DELETE FROM track_genre WHERE track_id IN (SELECT track_id FROM gone)) "
         "DELETE FROM track WHERE track_id IN (SELECT track_id FROM gone)",),
    )


def template_documents(url: str) -> dict[str, dict[Any, dict[str, Any]]]:
    engine = create_engine(to_sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            bound = bind_template(load_template(catalog_template_path()), conn)
            return {name: {item.key: item.document for item in reader.read(conn, KeyRange())}
                    for name, reader in bound.readers.items()}
    finally:
        engine.dispose()


def stored_documents(client: MongoClient[dict[str, Any]], database: str) -> dict[str, dict[Any, dict[str, Any]]]:
    return {name: {doc["_id"]: business_fields(doc) for doc in client[database][name].find({"_deleted": {"$ne": True}})}
            for name in COLLECTIONS}


def test_cdc_assemble_mongo_ends_at_the_documents_of_the_final_tables(database: str, kafka_bootstrap: str,
                                                                      mongo_uri: str, tmp_path: Path) -> None:
    stream = unique_name("tfasm")
    target = unique_name("tf_asm")
    for topic in (f"{stream}.cdc", f"{stream}.assemble"):
        create_topic(kafka_bootstrap, topic, 3)
    cdc = AppProcess(["cdc-postgres", "--stream", stream, "--label", "cdc", "--", f"--url={database}",
                      "--snapshot=initial", "--heartbeat-s=1"], tmp_path, "cdc")
    assemble = AppProcess(["assemble", "--stream", stream, "--label", "assemble", "--input", f"{stream}.cdc", "--",
                           f"--source={database}"], tmp_path, "assemble")
    sink = AppProcess(["mongo", "--stream", stream, "--label", "mongo", "--input", f"{stream}.assemble", "--",
                       f"--uri={mongo_uri}", f"--database={target}"], tmp_path, "mongo")
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    try:
        with running(cdc, assemble, sink):
            for process in (cdc, assemble, sink):
                process.wait_ready()
            writer = Writer(database, 250, seed=9)
            writer.start()
            writer.join(180)
            assert writer.error is None, writer.error
            expected = template_documents(database)
            assert all(expected[name] for name in COLLECTIONS)
            wait_for(lambda: stored_documents(client, target) == expected, 180,
                     "every document as the final tables give it", cdc, assemble, sink)
        for label in ("assemble", "mongo"):
            assert read_topic(kafka_bootstrap, f"{stream}.{label}.dlq") == []
    finally:
        client.drop_database(target)
        client.close()
