"""The machine's raw ceilings, measured with no tuneflow code in the path; later numbers are ratios to these."""

from __future__ import annotations

import io
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import TypeAdapter
from pymongo import MongoClient, ReplaceOne
from sqlalchemy import create_engine, text

from benchmarks.harness import REPEATS, measure
from benchmarks.records import encoded_size, track_documents
from streams.catalog.dburl import to_sqlalchemy_url
from streams.catalog.models import TrackDocument
from streams.runtime.runner import RunSpec
from streams.stores.mongo import MongoStore, WriteShape
from tests.integration.services import scratch_database

KAFKA_RECORDS = int(os.environ.get("TUNEFLOW_BENCH_KAFKA_RECORDS", "200000"))
STORE_DOCS = int(os.environ.get("TUNEFLOW_BENCH_STORE_DOCS", "20000"))
RDBMS_ROWS = int(os.environ.get("TUNEFLOW_BENCH_RDBMS_ROWS", "200000"))
BATCH = RunSpec("", "").batch_size  # the runner's default batch: the apps benchmark compares at this size
UPSERT_DOCS = int(os.environ.get("TUNEFLOW_BENCH_UPSERT_DOCS", "3000"))
UPDATE_DOCS = int(os.environ.get("TUNEFLOW_BENCH_UPDATE_DOCS", "20000"))
# FerretDB 1.24 hangs on an update command with as many ops as its backend pool (50): a few ops a command.
UPSERT_OPS_PER_COMMAND = 10

PYDANTIC_CEILING = "pydantic validate_json track (1 core)"
VALIDATE_SERIALIZE_CEILING = "pydantic validate_json + to_json track (1 core)"
PRODUCER_CONFIG = {"enable.idempotence": True, "linger.ms": 5, "batch.size": 1_000_000,
                   "compression.type": "lz4", "queue.buffering.max.messages": 500_000}


def cpu_ceilings(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    encoded = [orjson.dumps(d) for d in documents]
    return [
        measure("orjson.loads track", len(encoded), lambda: _each(orjson.loads, encoded)),
        pydantic_ceiling(encoded),
        validate_serialize_ceiling(encoded),
    ]


def pydantic_ceiling(encoded: list[bytes]) -> dict[str, Any]:
    """TrackDocument validation alone, results dropped as they come (a retained list would cost GC time)."""
    adapter = TypeAdapter(TrackDocument)
    return measure(PYDANTIC_CEILING, len(encoded), lambda: _each(adapter.validate_json, encoded))


def validate_serialize_ceiling(encoded: list[bytes]) -> dict[str, Any]:
    """What the normalize hop must do per record: validate, then write the validated document back as JSON."""
    validate = TrackDocument.__pydantic_validator__.validate_json
    to_json = TrackDocument.__pydantic_serializer__.to_json

    def run() -> None:
        for item in encoded:
            to_json(validate(item), by_alias=True)

    return measure(VALIDATE_SERIALIZE_CEILING, len(encoded), run)


def _each(function: Any, items: list[bytes]) -> None:
    for item in items:
        function(item)


def kafka_ceilings(bootstrap: str, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    payloads = [orjson.dumps(d) for d in documents]
    keys = [str(d["_id"]).encode() for d in documents]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics: list[str] = []

    def new_topic() -> None:
        name = f"tf_bench_{uuid.uuid4().hex[:8]}"
        for future in admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)]).values():
            future.result(30)
        topics.append(name)

    def produce() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG})
        topic = topics[-1]
        for key, value in zip(keys, payloads, strict=True):
            while True:
                try:
                    producer.produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        assert producer.flush(60) == 0

    def consume() -> None:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"tf_bench_{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, "fetch.min.bytes": 1_000_000,
                             "fetch.wait.max.ms": 50})
        consumer.assign([TopicPartition(topics[-1], 0, 0)])
        seen = 0
        while seen < len(payloads):
            seen += len(consumer.consume(num_messages=10_000, timeout=5))
        consumer.close()

    results = [measure("kafka produce (idempotent, lz4)", len(payloads), produce, setup=new_topic,
                       bytes_per_record=round(encoded_size(documents)), config=PRODUCER_CONFIG)]
    results.append(measure("kafka consume (batch 10k)", len(payloads), consume))
    for future in admin.delete_topics(topics).values():
        future.result(30)
    return results


def store_ceilings(uri: str, documents: list[dict[str, Any]], upsert_docs: int = UPSERT_DOCS,
                   repeats: int = REPEATS) -> list[dict[str, Any]]:
    """insert_many and unordered bulk upserts, plain pymongo; upserts go UPSERT_OPS_PER_COMMAND to a command.

    FerretDB 1.24 holds one backend connection per update op of a command until the command ends, so a
    command with as many ops as its pool (50 on pg, 100 on sqlite) never returns: the store and this ceiling
    send the same, smaller number.
    Upserts are far slower than inserts there, hence fewer documents for them (UPSERT_DOCS).
    """
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=10_000)
    database = client[f"tf_bench_{uuid.uuid4().hex[:8]}"]
    collection = database["tracks"]
    upserted = documents[:upsert_docs]
    updates = [d | {"title": "updated"} for d in upserted]

    def insert_many() -> None:
        for start in range(0, len(documents), BATCH):
            collection.insert_many([dict(d) for d in documents[start : start + BATCH]], ordered=False)

    def load_upserted() -> None:
        collection.drop()
        collection.insert_many([dict(d) for d in upserted], ordered=False)

    def upsert(docs: list[dict[str, Any]]) -> None:
        _upsert(collection, docs)

    details = {"batch": BATCH, "upsert_ops_per_command": UPSERT_OPS_PER_COMMAND}
    try:
        return [
            measure(f"store insert_many (batch {BATCH})", len(documents), insert_many, setup=collection.drop,
                    repeats=repeats, **details),
            measure("store bulk_write upsert, new keys", len(upserted), lambda: upsert(upserted),
                    setup=collection.drop, repeats=repeats, **details),
            measure("store bulk_write upsert, existing keys", len(upserted), lambda: upsert(updates),
                    setup=load_upserted, repeats=repeats, **details),
        ]
    finally:
        client.drop_database(database.name)
        client.close()


EXISTING_KEYS_CEILING = "store guarded replace, existing keys"


def write_shape(uri: str) -> WriteShape:
    """How the mongo store writes to this server (commands of N replacements, M in flight): the ceiling's shape."""
    store = MongoStore(uri, "admin")
    try:
        return store.shape()
    finally:
        store.close()


def existing_keys_ceiling(uri: str, documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Version-guarded replacements of every one of `documents` in a collection holding exactly them (one run),
    plain pymongo in the store's write shape: the same commands, as many in flight, on the same indexed store."""
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=10_000)
    database = client[f"tf_bench_{uuid.uuid4().hex[:8]}"]
    collection = database["tracks"]
    shape = write_shape(uri)
    try:
        for start in range(0, len(documents), 5000):
            collection.insert_many([d | {"_version": 1, "_deleted": False} for d in documents[start:start + 5000]],
                                   ordered=False)
        updates = [d | {"title": "updated", "_version": 2, "_deleted": False} for d in documents]
        size = shape.replacements_per_command
        commands = [updates[start : start + size] for start in range(0, len(updates), size)]

        def replace(command: list[dict[str, Any]]) -> None:
            collection.bulk_write([ReplaceOne({"_id": d["_id"], "_version": {"$lt": d["_version"]}}, d)
                                   for d in command], ordered=False)

        def run() -> None:
            with ThreadPoolExecutor(max_workers=shape.commands_in_flight) as pool:
                for _ in pool.map(replace, commands):
                    pass

        result = measure(EXISTING_KEYS_CEILING, len(documents), run, repeats=1,
                         replacements_per_command=size, commands_in_flight=shape.commands_in_flight)
        if collection.count_documents({"title": "updated"}) != len(documents):
            raise RuntimeError("the guarded-replace ceiling did not replace every document")
        return result
    finally:
        client.drop_database(database.name)
        client.close()


def _upsert(collection: Any, docs: list[dict[str, Any]]) -> None:
    for start in range(0, len(docs), UPSERT_OPS_PER_COMMAND):
        chunk = docs[start : start + UPSERT_OPS_PER_COMMAND]
        collection.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in chunk], ordered=False)


def rdbms_ceilings(kind: str, url: str, rows: int) -> list[dict[str, Any]]:
    with scratch_database(url, "tf_bench") as scratch_url:
        engine = create_engine(to_sqlalchemy_url(scratch_url))
        try:
            return _rdbms_ceilings(kind, engine, rows)
        finally:
            engine.dispose()


def _rdbms_ceilings(kind: str, engine: Any, rows: int) -> list[dict[str, Any]]:
    values = [(i, i // 10 + 1, f"Track title number {i} 밤편지", 1, i % 12 + 1, 200_000 + i % 1000,
               f"KRA30{i % 10_000_000:07d}", i % 2 == 0, "2024-02-20 09:00:00") for i in range(1, rows + 1)]
    ddl = ("CREATE TABLE track (track_id BIGINT PRIMARY KEY, album_id BIGINT NOT NULL, title VARCHAR(500) NOT NULL, "
           "disc_no SMALLINT NOT NULL, track_no SMALLINT NOT NULL, duration_ms INTEGER, isrc CHAR(12), "
           "explicit BOOLEAN NOT NULL, updated_at TIMESTAMP NOT NULL)")

    def reset() -> None:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS track"))
            conn.execute(text(ddl))

    def copy_postgres() -> None:
        buffer = io.StringIO()
        for row in values:
            buffer.write("\t".join("t" if v is True else "f" if v is False else str(v) for v in row) + "\n")
        buffer.seek(0)
        raw = engine.raw_connection()
        try:
            with raw.cursor() as cursor:
                cursor.copy_expert("COPY track FROM STDIN", buffer)
            raw.commit()
        finally:
            raw.close()

    def insert_mariadb() -> None:
        raw = engine.raw_connection()
        try:
            with raw.cursor() as cursor:
                for start in range(0, len(values), 5000):
                    cursor.executemany("INSERT INTO track VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                                       values[start : start + 5000])
            raw.commit()
        finally:
            raw.close()

    if kind == "postgresql":
        return [measure("postgresql COPY track rows", rows, copy_postgres, setup=reset)]
    return [measure("mariadb multi-row INSERT track rows (5000/stmt)", rows, insert_mariadb, setup=reset)]


def run_all(env: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    print("ceilings:", flush=True)
    documents = track_documents(max(KAFKA_RECORDS, STORE_DOCS))
    return {
        "cpu": cpu_ceilings(documents[:50_000]),
        "kafka": kafka_ceilings(env["TUNEFLOW_KAFKA_BOOTSTRAP"], documents[:KAFKA_RECORDS]),
        "store": store_ceilings(env["TUNEFLOW_MONGO_URI"], documents[:STORE_DOCS]),
        "postgresql": rdbms_ceilings("postgresql", env["TUNEFLOW_PG_URL"], RDBMS_ROWS),
        "mariadb": rdbms_ceilings("mariadb", env["TUNEFLOW_MYSQL_URL"], RDBMS_ROWS),
    }
