"""A store's writes in a process of its own (streams/stores/process.py): what reaches the store, the errors that come
back as themselves, and a killed child replaced on the next call. SQLite and the embedded store, so no services."""

from __future__ import annotations

import os
import signal
from functools import partial
from pathlib import Path

import pytest

from sinks.dual_write import open_mongo_writer, open_rdbms_writer
from streams.catalog.dburl import make_engine
from streams.catalog.legacy import create_legacy_schema
from streams.errors import ConfigError, TransientError
from streams.stores.embedded import EmbeddedStore
from streams.stores.process import StoreProcess
from tests import relational_checks as checks
from tests.migration_oracle import CATALOG_TEMPLATE


def test_changes_written_by_the_child_are_in_the_store(tmp_path: Path) -> None:
    documents = [checks.track(i) for i in range(1, 51)]
    store = StoreProcess(partial(open_mongo_writer, f"embedded://{tmp_path}", "catalog", "tracks"), "embedded")
    try:
        first = store.apply("tracks", [checks.upsert(d) for d in documents])
        again = store.apply("tracks", [checks.upsert(d) for d in documents])  # a replay: every change stale
        assert store.misfits("tracks", [checks.upsert(documents[0])]) == {}
    finally:
        store.close()
    assert (first.applied, first.stale, again.applied, again.stale) == (50, 0, 0, 50)
    local = EmbeddedStore(tmp_path)
    try:
        found = local.get_many("tracks", [d["_id"] for d in documents])
    finally:
        local.close()
    assert {key: doc["title"] for key, doc in found.items()} == {d["_id"]: d["title"] for d in documents}


def test_the_relational_stores_misfits_and_rejections_come_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    engine = make_engine(url)
    create_legacy_schema(engine)
    engine.dispose()
    store = StoreProcess(partial(open_rdbms_writer, url, str(CATALOG_TEMPLATE), "tracks", "test"), "sqlite")
    try:
        misfit = checks.upsert(checks.track(7, title="x" * 501))
        fits = checks.upsert(checks.track(8))
        assert list(store.misfits("tracks", [misfit, fits])) == [7]
        result = store.apply("tracks", [misfit, fits])
    finally:
        store.close()
    assert result.applied == 1 and list(result.rejected) == [7]
    assert "title" in result.rejected[7][0]["field"] + result.rejected[7][0]["message"]


def test_an_error_opening_the_store_is_raised_as_itself() -> None:
    with pytest.raises(ConfigError, match="names no directory"):
        StoreProcess(partial(open_mongo_writer, "embedded://", "catalog", "tracks"), "embedded")


def test_a_killed_child_is_a_transient_error_and_the_next_call_starts_another(tmp_path: Path) -> None:
    store = StoreProcess(partial(open_mongo_writer, f"embedded://{tmp_path}", "catalog", "tracks"), "embedded")
    try:
        store.apply("tracks", [checks.upsert(checks.track(1))])
        assert store._process is not None and store._process.pid is not None
        os.kill(store._process.pid, signal.SIGKILL)
        store._process.join(10)
        with pytest.raises(TransientError, match="the store's process ended"):
            store.apply("tracks", [checks.upsert(checks.track(2))])
        result = store.apply("tracks", [checks.upsert(checks.track(2))])
    finally:
        store.close()
    assert result.applied == 1


def test_an_unreachable_server_is_the_stores_own_error_without_its_password() -> None:
    url = "postgresql://tuneflow:s3cret-pw@127.0.0.1:1/catalog"
    with pytest.raises(TransientError, match="could not open for now") as raised:  # the harness retries set-up
        StoreProcess(partial(open_rdbms_writer, url, str(CATALOG_TEMPLATE), "tracks", "test"), "postgresql")
    assert "127.0.0.1:1" in str(raised.value) and "s3cret-pw" not in str(raised.value)
