"""`open_store` picks the store from the URI scheme and explains a wrong one without echoing secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.stores.base import Change
from streams.stores.embedded import EmbeddedStore
from streams.stores.factory import open_store
from streams.stores.mongo import MongoStore


def test_an_absolute_embedded_uri_opens_sqlite_files_in_that_directory(tmp_path: Path) -> None:
    store = open_store(f"embedded://{tmp_path / 'store'}", "music")
    try:
        assert isinstance(store, EmbeddedStore)
        store.apply("tracks", [Change(1, 1, {"_id": 1})])
        assert store.path == tmp_path / "store" / "music.sqlite"
        assert store.path.exists()
    finally:
        store.close()


def test_a_relative_embedded_uri_is_relative_to_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("embedded://data/store")
    try:
        assert isinstance(store, EmbeddedStore)
        assert store.path.resolve() == tmp_path / "data" / "store" / "catalog.sqlite"
    finally:
        store.close()


def test_an_embedded_uri_without_a_directory_is_refused() -> None:
    with pytest.raises(ConfigError, match="names no directory"):
        open_store("embedded://")


@pytest.mark.parametrize("uri", ["mongodb://127.0.0.1:1", "mongodb://user:pw@127.0.0.1:1,127.0.0.1:2/admin"])
def test_a_mongodb_uri_opens_a_mongo_store_without_connecting(uri: str) -> None:
    store = open_store(uri, "catalog")
    try:
        assert isinstance(store, MongoStore)
        assert "pw" not in store.where
    finally:
        store.close()


@pytest.mark.parametrize("uri", ["postgresql://tuneflow:s3cret@db/catalog", "mongo://u:s3cret@h", "s3cret"])
def test_an_unsupported_scheme_names_the_supported_ones_and_hides_the_rest(uri: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(uri)
    message = str(caught.value)
    assert "embedded://" in message and "mongodb://" in message and "mongodb+srv://" in message
    assert "s3cret" not in message


def test_a_malformed_mongodb_uri_is_a_config_error_that_keeps_the_password_out() -> None:
    with pytest.raises(ConfigError, match="percent-escaped") as caught:
        open_store("mongodb://user:pa/ss:w0rd@127.0.0.1:1")
    assert "w0rd" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_an_invalid_database_name_is_refused_before_connecting() -> None:
    with pytest.raises(ConfigError, match="invalid database name"):
        open_store("mongodb://127.0.0.1:1", "bad.name")
