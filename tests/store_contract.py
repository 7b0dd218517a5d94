"""Contract checks for any DocumentStore: unit tests run them on SQLite, integration tests on MongoDB.

A test module subclasses `StoreContract` and provides a `store` fixture (a fresh, empty store per test).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from streams.errors import ConfigError
from streams.stores.base import DELETED_FIELD, VERSION_FIELD, Change, DocumentStore

TRACKS = "tracks"


def track(key: int, version: int, title: str | None = None) -> Change:
    return Change(key, version, {
        "_id": key, "title": title or f"track {key} v{version}", "isrc": f"KRA{key:09d}",
        "album": {"album_id": key // 10, "title": "밤편지", "release": "2017-03-24"},
        "artists": [{"artist_id": 7, "name": "IU"}], "duration_ms": 253_000 + key, "explicit": False,
        "genres": ["K-Pop", "Ballad"], "score": 0.5,
    })


def tombstone(key: int, version: int) -> Change:
    return Change(key, version, None)


def content(document: dict[str, Any]) -> dict[str, Any]:
    return {field: value for field, value in document.items() if field not in (VERSION_FIELD, DELETED_FIELD)}


def title(store: DocumentStore, key: Any) -> str | None:
    found = store.get_many(TRACKS, [key]).get(key)
    return None if found is None else str(found["title"])


def scanned_keys(store: DocumentStore, collection: str = TRACKS, batch_size: int = 1000) -> list[Any]:
    return [document["_id"] for page in store.scan(collection, batch_size) for document in page]


class StoreContract:
    """Every check a DocumentStore must pass, whatever it is built on."""

    @pytest.fixture
    def store(self) -> DocumentStore:
        raise NotImplementedError("a test module provides the store under test")

    def test_an_empty_batch_writes_nothing(self, store: DocumentStore) -> None:
        result = store.apply(TRACKS, [])
        assert (result.applied, result.stale) == (0, 0)
        assert store.count(TRACKS) == 0

    def test_new_documents_are_stored_with_their_version(self, store: DocumentStore) -> None:
        changes = [track(1, 10), track(2, 20), track(3, 30)]
        result = store.apply(TRACKS, changes)
        assert (result.applied, result.stale) == (3, 0)
        stored = store.get_many(TRACKS, [1, 2, 3])
        assert {key: content(document) for key, document in stored.items()} == {
            change.key: change.document for change in changes
        }
        assert [stored[key][VERSION_FIELD] for key in (1, 2, 3)] == [10, 20, 30]
        assert all(document[DELETED_FIELD] is False for document in stored.values())

    def test_a_newer_version_replaces_the_whole_document(self, store: DocumentStore) -> None:
        store.apply(TRACKS, [Change(1, 10, {"_id": 1, "title": "old", "dropped_later": True})])
        result = store.apply(TRACKS, [Change(1, 11, {"_id": 1, "title": "new"})])
        assert (result.applied, result.stale) == (1, 0)
        stored = store.get_many(TRACKS, [1])[1]
        assert content(stored) == {"_id": 1, "title": "new"}
        assert stored[VERSION_FIELD] == 11

    @pytest.mark.parametrize("version", [9, 10], ids=["older", "equal"])
    def test_an_older_or_equal_version_is_stale_and_changes_nothing(self, store: DocumentStore,
                                                                      version: int) -> None:
        store.apply(TRACKS, [track(1, 10, "kept")])
        result = store.apply(TRACKS, [track(1, version, "late")])
        assert (result.applied, result.stale) == (0, 1)
        stored = store.get_many(TRACKS, [1])[1]
        assert (stored["title"], stored[VERSION_FIELD]) == ("kept", 10)

    def test_the_newest_version_in_a_batch_wins_whatever_the_order(self, store: DocumentStore) -> None:
        result = store.apply(TRACKS, [track(7, 3, "c"), track(7, 5, "e"), track(7, 4, "d"), track(8, 1, "x")])
        assert (result.applied, result.stale) == (2, 2)
        assert title(store, 7) == "e"
        assert store.get_many(TRACKS, [7])[7][VERSION_FIELD] == 5

    def test_a_batch_mixing_new_newer_and_stale_changes_applies_exactly_the_newer(
            self, store: DocumentStore) -> None:
        store.apply(TRACKS, [track(1, 10, "one"), track(2, 10, "two")])
        result = store.apply(TRACKS, [track(1, 9, "stale"), track(2, 11, "newer"), track(3, 1, "new"),
                                      track(1, 10, "equal")])
        assert (result.applied, result.stale) == (2, 2)
        assert [title(store, key) for key in (1, 2, 3)] == ["one", "newer", "new"]

    def test_replaying_a_batch_changes_nothing(self, store: DocumentStore) -> None:
        batch = [track(key, key * 10) for key in range(1, 101)]
        assert store.apply(TRACKS, batch).applied == 100
        again = store.apply(TRACKS, batch)
        assert (again.applied, again.stale) == (0, 100)
        assert store.count(TRACKS) == 100

    def test_a_tombstone_hides_the_document_from_every_read(self, store: DocumentStore) -> None:
        store.apply(TRACKS, [track(1, 10), track(2, 10)])
        result = store.apply(TRACKS, [tombstone(1, 15)])
        assert (result.applied, result.stale) == (1, 0)
        assert store.get_many(TRACKS, [1, 2]).keys() == {2}
        assert store.count(TRACKS) == 1
        assert scanned_keys(store) == [2]

    @pytest.mark.parametrize("version", [12, 15], ids=["older", "equal"])
    def test_a_late_older_write_cannot_resurrect_a_deleted_document(self, store: DocumentStore,
                                                                     version: int) -> None:
        # A snapshot row read before the delete arrives after it: the track must stay deleted.
        store.apply(TRACKS, [track(1, 10), tombstone(1, 15)])
        result = store.apply(TRACKS, [track(1, version, "late")])
        assert (result.applied, result.stale) == (0, 1)
        assert store.get_many(TRACKS, [1]) == {}
        assert store.count(TRACKS) == 0

    def test_a_delete_of_an_unseen_key_still_blocks_older_writes(self, store: DocumentStore) -> None:
        assert store.apply(TRACKS, [tombstone(99, 50)]).applied == 1
        assert store.apply(TRACKS, [track(99, 40)]).stale == 1
        assert store.get_many(TRACKS, [99]) == {}

    def test_a_newer_write_after_a_tombstone_brings_the_document_back(self, store: DocumentStore) -> None:
        store.apply(TRACKS, [track(1, 10), tombstone(1, 15)])
        result = store.apply(TRACKS, [track(1, 16, "back")])
        assert (result.applied, result.stale) == (1, 0)
        assert title(store, 1) == "back"
        assert store.get_many(TRACKS, [1])[1][DELETED_FIELD] is False
        assert store.count(TRACKS) == 1

    def test_get_many_returns_only_what_exists_and_was_asked_for(self, store: DocumentStore) -> None:
        store.apply(TRACKS, [track(key, 1) for key in range(10)])
        assert store.get_many(TRACKS, []) == {}
        assert store.get_many(TRACKS, [3, 42, 3, 5]).keys() == {3, 5}
        assert store.get_many("never_written", [1]) == {}

    def test_int_and_str_keys_are_distinct(self, store: DocumentStore) -> None:
        store.apply(TRACKS, [Change(7, 1, {"_id": 7, "v": "int"}), Change("7", 1, {"_id": "7", "v": "str"})])
        assert store.count(TRACKS) == 2
        assert {key: document["v"] for key, document in store.get_many(TRACKS, [7, "7"]).items()} == {
            7: "int", "7": "str"}

    def test_scan_returns_every_visible_document_in_key_order_and_batches(self, store: DocumentStore) -> None:
        keys = list(range(1, 51))
        random.Random(3).shuffle(keys)
        store.apply(TRACKS, [track(key, 1) for key in keys])
        store.apply(TRACKS, [tombstone(13, 2), tombstone(50, 2)])
        pages = list(store.scan(TRACKS, batch_size=7))
        assert [len(page) for page in pages] == [7] * 6 + [6]
        assert [document["_id"] for page in pages for document in page] == [
            key for key in range(1, 51) if key not in (13, 50)]
        assert all(document[VERSION_FIELD] == 1 for page in pages for document in page)

    def test_scan_orders_numbers_numerically_and_before_strings(self, store: DocumentStore) -> None:
        store.apply(TRACKS, [Change(key, 1, {"_id": key}) for key in ("b", 10, "a", 2, "10")])
        assert scanned_keys(store) == [2, 10, "10", "a", "b"]

    def test_scan_range_reads_keys_after_and_up_to_in_order_without_tombstones(self, store: DocumentStore) -> None:
        store.apply(TRACKS, [track(key, 1) for key in range(1, 21)] + [tombstone(8, 2)])

        def keys(after: object, upto: object) -> list[object]:
            return [doc["_id"] for page in store.scan_range(TRACKS, after, upto, batch_size=3) for doc in page]

        assert keys(5, 10) == [6, 7, 9, 10]
        assert keys(None, 3) == [1, 2, 3]
        assert keys(18, None) == [19, 20]
        assert keys(None, None) == [key for key in range(1, 21) if key != 8]

    def test_unordered_scans_read_every_visible_document_and_key_once(self, store: DocumentStore) -> None:
        store.apply(TRACKS, [track(key, 1) for key in range(1, 24)] + [tombstone(8, 2)])
        visible = [key for key in range(1, 24) if key != 8]
        pages = list(store.scan_unordered(TRACKS, batch_size=5))
        assert max(len(page) for page in pages) == 5
        assert sorted(document["_id"] for page in pages for document in page) == visible
        assert all(document[VERSION_FIELD] == 1 for page in pages for document in page)
        assert sorted(key for page in store.scan_keys(TRACKS, batch_size=5) for key in page) == visible
        assert isinstance(store.streams_by_key(), bool)

    def test_scan_since_reads_only_what_was_written_above_a_version(self, store: DocumentStore) -> None:
        store.apply(TRACKS, [track(key, 1) for key in range(1, 6)])
        store.apply(TRACKS, [track(4, 7), track(2, 9), tombstone(5, 8)])
        assert [doc["_id"] for page in store.scan_since(TRACKS, 1) for doc in page] == [2, 4]

    def test_scan_and_count_of_an_empty_collection(self, store: DocumentStore) -> None:
        assert list(store.scan("never_written")) == []
        assert store.count("never_written") == 0

    def test_collections_are_independent(self, store: DocumentStore) -> None:
        store.apply("albums", [Change(1, 1, {"_id": 1, "title": "album"})])
        store.apply(TRACKS, [track(1, 5, "track")])
        assert title(store, 1) == "track"
        assert store.get_many("albums", [1])[1]["title"] == "album"

    def test_drop_forgets_documents_and_tombstones(self, store: DocumentStore) -> None:
        store.apply(TRACKS, [track(1, 10), track(2, 10), tombstone(2, 20)])
        store.apply("albums", [Change(1, 1, {"_id": 1})])
        store.drop(TRACKS)
        assert store.count(TRACKS) == 0
        assert store.get_many(TRACKS, [1, 2]) == {}
        assert store.apply(TRACKS, [track(2, 5, "fresh start")]).applied == 1
        assert title(store, 2) == "fresh start"
        assert store.count("albums") == 1
        store.drop("never_written")

    def test_names_from_config_are_validated(self, store: DocumentStore) -> None:
        with pytest.raises(ConfigError, match="invalid collection name"):
            store.apply('x"; DROP TABLE y; --', [track(1, 1)])
        with pytest.raises(ConfigError, match="invalid collection name"):
            store.count("a.b")

    def test_after_update_batches_a_mixed_batch_still_applies_exactly_the_newer(self, store: DocumentStore) -> None:
        store.apply(TRACKS, [track(key, 1) for key in range(60)])
        for version in (2, 3):  # two batches of nothing but newer versions of stored keys
            assert store.apply(TRACKS, [track(key, version) for key in range(60)]).applied == 60
        mixed = ([track(key, 4, "newer") for key in range(0, 30)] + [track(key, 2, "stale") for key in range(30, 50)]
                 + [tombstone(key, 4) for key in range(50, 55)] + [track(key, 1, "new") for key in range(100, 115)])
        result = store.apply(TRACKS, mixed)
        assert (result.applied, result.stale) == (50, 20)
        stored = store.get_many(TRACKS, [*range(60), *range(100, 115)])
        assert sorted(stored) == [*range(50), *range(55, 60), *range(100, 115)]
        assert {stored[k]["title"] for k in range(30)} == {"newer"}
        assert all(stored[k]["title"] == f"track {k} v3" for k in range(30, 50))
        assert {stored[k]["title"] for k in range(100, 115)} == {"new"}
        assert store.apply(TRACKS, [track(key, 3, "replayed") for key in range(60)]).applied == 0

    def test_a_large_batch_in_one_call(self, store: DocumentStore) -> None:
        batch = [track(key, 100) for key in range(5000)]
        random.Random(5).shuffle(batch)
        result = store.apply(TRACKS, batch)
        assert (result.applied, result.stale) == (5000, 0)
        assert store.count(TRACKS) == 5000
        assert scanned_keys(store) == list(range(5000))
        # A replay of the whole batch with a few newer versions mixed in (FerretDB scans per replacement).
        newer = [track(key, 101, "second pass") for key in range(0, 5000, 100)]
        result = store.apply(TRACKS, batch + newer)
        assert (result.applied, result.stale) == (50, 5000)
        stored = store.get_many(TRACKS, list(range(5000)))
        assert len(stored) == 5000
        assert sum(document["title"] == "second pass" for document in stored.values()) == 50
        assert all(document[VERSION_FIELD] == (101 if key % 100 == 0 else 100)
                   for key, document in stored.items())
