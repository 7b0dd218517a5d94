"""The real services answer the way the platform relies on: Kafka transactions, FerretDB, both RDBMS."""

from __future__ import annotations

import time
import urllib.request
import uuid

import orjson
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pymongo import MongoClient, UpdateOne
from sqlalchemy import Engine, inspect, text

from streams.catalog.legacy import create_legacy_schema
from tests.integration.services import unique_name
from tests.unit.fixtures import track_payload

LEGACY_TABLES = {"artist", "album", "album_artist", "track", "track_artist", "genre", "track_genre"}


def _create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        future.result(timeout=30)


def _consume_all(bootstrap: str, topic: str, isolation: str, expected_at_least: int) -> list[bytes]:
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": unique_name("tf_test_group"),
        "auto.offset.reset": "earliest",
        "isolation.level": isolation,
        "enable.auto.commit": False,
    })
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    idle = 0
    try:
        while idle < 5:
            batch = consumer.consume(num_messages=500, timeout=1.0)
            if not batch:
                idle += 1 if len(values) >= expected_at_least else 0.2
                continue
            for message in batch:
                if message.error():
                    raise KafkaException(message.error())
                values.append(message.value())
    finally:
        consumer.close()
    return values


def test_kafka_transactions_commit_and_abort(kafka_bootstrap: str) -> None:
    topic = unique_name("tf_test_txn")
    _create_topic(kafka_bootstrap, topic)
    producer = Producer({
        "bootstrap.servers": kafka_bootstrap,
        "transactional.id": f"tf-test-{uuid.uuid4()}",
        "enable.idempotence": True,
    })
    producer.init_transactions(30)

    producer.begin_transaction()
    for i in range(100):
        producer.produce(topic, key=str(i).encode(), value=orjson.dumps(track_payload(i + 1)))
    producer.commit_transaction(30)

    producer.begin_transaction()
    for _ in range(50):
        producer.produce(topic, key=b"aborted", value=b"must never be read committed")
    producer.flush(30)
    producer.abort_transaction(30)

    committed = _consume_all(kafka_bootstrap, topic, "read_committed", expected_at_least=100)
    assert len(committed) == 100
    assert sorted(orjson.loads(v)["_id"] for v in committed) == list(range(1, 101))

    uncommitted = _consume_all(kafka_bootstrap, topic, "read_uncommitted", expected_at_least=150)
    assert len(uncommitted) == 150
    assert uncommitted.count(b"must never be read committed") == 50


def test_ferretdb_writes_reads_and_bulk_upserts(mongo_uri: str) -> None:
    client: MongoClient = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    database = client[unique_name("tf_test")]
    try:
        tracks = database["tracks"]
        tracks.insert_many([track_payload(i) for i in range(1, 201)])
        assert tracks.count_documents({}) == 200
        matched = upserted = 0
        # FerretDB 1.24 hangs on a command with as many update ops as its backend pool: keep commands small
        for start in range(151, 251, 25):
            result = tracks.bulk_write(
                [UpdateOne({"_id": i}, {"$set": {"title": f"new {i}"}}, upsert=True) for i in range(start, start + 25)],
                ordered=False,
            )
            matched, upserted = matched + result.matched_count, upserted + result.upserted_count
        assert (matched, upserted) == (50, 50)
        assert tracks.count_documents({}) == 250
        assert tracks.find_one({"_id": 151})["title"] == "new 151"
        assert tracks.find_one({"_id": 1})["album"]["title"] == "The Winning"
    finally:
        client.drop_database(database.name)
        client.close()


@pytest.mark.parametrize("engine_fixture", ["postgres_engine", "mariadb_engine"])
def test_legacy_schema_is_created_in_each_rdbms(engine_fixture: str, request: pytest.FixtureRequest) -> None:
    engine: Engine = request.getfixturevalue(engine_fixture)
    create_legacy_schema(engine)
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) >= LEGACY_TABLES
    track_fks = {fk["referred_table"] for fk in inspector.get_foreign_keys("track_artist")}
    assert track_fks == {"track", "artist"}
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO genre (genre_id, name) VALUES (1, 'K-Pop')"))
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"), conn.begin_nested():
            conn.execute(text("INSERT INTO genre (genre_id, name) VALUES (2, 'K-Pop')"))
        assert conn.execute(text("SELECT count(*) FROM genre")).scalar_one() == 1


def test_rdbms_servers_are_configured_for_change_data_capture(postgres_engine: Engine, mariadb_engine: Engine) -> None:
    with postgres_engine.connect() as conn:
        assert conn.execute(text("SHOW wal_level")).scalar() == "logical"
        assert int(conn.execute(text("SHOW max_replication_slots")).scalar() or 0) >= 10
    with mariadb_engine.connect() as conn:
        variables = dict(conn.execute(text(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
            "('log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata', 'server_id')"
        )).all())
    assert variables == {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL",
                         "binlog_row_metadata": "FULL", "server_id": "1"}


def test_prometheus_scrapes_and_answers_queries(prometheus_url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(f"{prometheus_url}/api/v1/query?query=up%7Bjob%3D%22prometheus%22%7D",
                                    timeout=5) as answer:
            body = orjson.loads(answer.read())
        assert body["status"] == "success"
        if body["data"]["result"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert [sample["value"][1] for sample in body["data"]["result"]] == ["1"]
