from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.stores.base import Change
from streams.stores.embedded import EmbeddedStore


@pytest.fixture
def store(tmp_path: Path) -> EmbeddedStore:
    s = EmbeddedStore(tmp_path / "store")
    yield s
    s.close()


def test_newer_version_wins_in_any_arrival_order(store: EmbeddedStore) -> None:
    store.apply("tracks", [Change(1, 20, {"_id": 1, "title": "v20"})])
    result = store.apply("tracks", [Change(1, 10, {"_id": 1, "title": "v10"})])
    assert result.applied == 0 and result.stale == 1
    assert store.get_many("tracks", [1])[1]["title"] == "v20"
    store.apply("tracks", [Change(1, 30, {"_id": 1, "title": "v30"})])
    assert store.get_many("tracks", [1])[1]["title"] == "v30"


def test_newest_in_one_batch_wins(store: EmbeddedStore) -> None:
    store.apply("tracks", [Change(7, 3, {"t": "c"}), Change(7, 5, {"t": "e"}), Change(7, 4, {"t": "d"})])
    assert store.get_many("tracks", [7])[7]["t"] == "e"


def test_tombstone_hides_document_and_blocks_late_older_rows(store: EmbeddedStore) -> None:
    store.apply("tracks", [Change(1, 10, {"t": "a"}), Change(2, 10, {"t": "b"})])
    store.apply("tracks", [Change(1, 15, None)])
    assert store.count("tracks") == 1
    assert store.get_many("tracks", [1, 2]).keys() == {2}
    # A snapshot row read before the delete arrives late: it must not resurrect the track.
    store.apply("tracks", [Change(1, 12, {"t": "late"})])
    assert store.get_many("tracks", [1]) == {}
    assert store.version_of("tracks", 1) == (15, True)


def test_replay_changes_nothing(store: EmbeddedStore) -> None:
    batch = [Change(k, k * 10, {"k": k}) for k in range(1, 101)]
    assert store.apply("tracks", batch).applied == 100
    assert store.apply("tracks", batch).applied == 0
    assert [d["k"] for page in store.scan("tracks", batch_size=30) for d in page] == list(range(1, 101))


def test_int_and_str_keys_are_distinct(store: EmbeddedStore) -> None:
    store.apply("c", [Change(7, 1, {"v": "int"}), Change("7", 1, {"v": "str"})])
    assert store.count("c") == 2


def test_names_from_config_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid collection name"):
        EmbeddedStore(tmp_path).apply('x"; DROP TABLE y; --', [])
    with pytest.raises(ConfigError, match="invalid database name"):
        EmbeddedStore(tmp_path, database="../etc")
