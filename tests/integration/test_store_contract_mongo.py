"""MongoStore on the real server (the stack's FerretDB) passes the contract the embedded store passes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient

from streams.errors import RecordError, TransientError
from streams.stores.base import Change
from streams.stores.mongo import MongoStore
from tests.integration.services import unique_name
from tests.store_contract import StoreContract, track

pytestmark = pytest.mark.integration


@pytest.fixture
def client(mongo_uri: str) -> Iterator[MongoClient[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    yield client
    client.close()


class TestMongoStore(StoreContract):
    @pytest.fixture
    def store(self, mongo_uri: str, client: MongoClient[dict[str, Any]]) -> Iterator[MongoStore]:
        database = unique_name("tf_store")
        store = MongoStore(mongo_uri, database, client=client)
        yield store
        store.close()
        client.drop_database(database)


def test_indexes_for_lookups_by_field(mongo_uri: str, client: MongoClient[dict[str, Any]]) -> None:
    database = unique_name("tf_store")
    store = MongoStore(mongo_uri, database, client=client)
    try:
        store.ensure_indexes("tracks", ("isrc", "album.album_id"))
        store.ensure_indexes("tracks", ("isrc", "album.album_id"))  # idempotent, as every sink start calls it
        store.apply("tracks", [track(1, 1)])
        indexed = {next(iter(spec["key"])) for spec in client[database]["tracks"].list_indexes()}
        assert {"isrc", "album.album_id"} <= indexed
    finally:
        client.drop_database(database)


def test_documents_written_by_someone_else_are_refused_not_overwritten(
        mongo_uri: str, client: MongoClient[dict[str, Any]]) -> None:
    database = unique_name("tf_store")
    client[database]["tracks"].insert_one({"_id": 1, "title": "loaded by the old batch job"})
    store = MongoStore(mongo_uri, database, client=client)
    try:
        with pytest.raises(RecordError, match="no numeric _version"):
            store.apply("tracks", [track(1, 5)])
        assert client[database]["tracks"].find_one({"_id": 1}) == {
            "_id": 1, "title": "loaded by the old batch job"}
    finally:
        client.drop_database(database)


@pytest.mark.parametrize("operation", ["apply", "get_many", "count", "scan"])
def test_an_unreachable_server_is_a_transient_error_quickly(operation: str) -> None:
    store = MongoStore("mongodb://tuneflow:s3cret@127.0.0.1:1/?serverSelectionTimeoutMS=500", "catalog")
    calls = {
        "apply": lambda: store.apply("tracks", [Change(1, 1, {"_id": 1})]),
        "get_many": lambda: store.get_many("tracks", [1]),
        "count": lambda: store.count("tracks"),
        "scan": lambda: list(store.scan("tracks")),
    }
    started = time.monotonic()
    try:
        with pytest.raises(TransientError, match=r"127\.0\.0\.1:1") as caught:
            calls[operation]()
    finally:
        store.close()
    assert time.monotonic() - started < 10
    assert "s3cret" not in str(caught.value)
