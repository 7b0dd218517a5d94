"""`tuneflow verify` by key-range hashes on SQLite and the embedded store: clean, then exactly the tampered keys."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from streams.catalog.generator import generate_catalog
from streams.migration.source import load_bound
from streams.migration.verify import RangeVerifier, field_diff
from streams.stores.base import Change
from streams.stores.embedded import EmbeddedStore
from tests.migration_oracle import CATALOG_TEMPLATE
from tests.unit.cli import Run


def test_clean_then_tampered_target_and_source(tmp_path: Path, tuneflow: Run) -> None:
    legacy = tmp_path / "legacy.sqlite"
    url = f"sqlite:///{legacy}"
    generate_catalog(url, 3000, seed=3)
    target = f"embedded://{tmp_path / 'store'}"
    common = ("--source", url, "--target", target, "--template", str(CATALOG_TEMPLATE))
    assert tuneflow("migrate", "start", *common, "--chunk-rows", "700").returncode == 0
    clean = tuneflow("verify", *common, "--json", "--chunk-rows", "500")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert json.loads(clean.stdout)["ok"] is True

    store = EmbeddedStore(tmp_path / "store")
    stored = store.get_many("tracks", [10, 20, 30])
    nested, reordered = dict(stored[10]), dict(stored[30])
    nested["album"] = {**nested["album"], "label": "Tampered"}
    reordered["artists"] = [reordered["artists"][-1], *reordered["artists"][:-1]]
    assert len(reordered["artists"]) > 1
    future = 2**62
    store.apply("tracks", [Change(10, future, nested), Change(30, future, reordered), Change(20, future, None),
                           Change(2_999_999, future, {"_id": 2_999_999, "title": "not in the source"})])
    store.close()
    with sqlite3.connect(legacy) as conn:
        conn.execute("UPDATE track SET duration_ms = duration_ms + 1 WHERE track_id = 1500")

    result = tuneflow("verify", *common, "--collections", "tracks", "--json", "--chunk-rows", "500")
    assert result.returncode == 1
    [tracks] = json.loads(result.stdout)["collections"]
    assert tracks["keys"] == {"missing": [20], "extra": [2_999_999], "different": [10, 30, 1500]}
    samples = {sample["key"]: sample["fields"] for sample in tracks["samples"]}
    assert samples[10] == [{"path": "album.label", "source": samples[10][0]["source"], "target": "Tampered"}]
    assert samples[30][0]["path"].startswith("artists[0].")
    assert [field["path"] for field in samples[1500]] == ["duration_ms"]

    text = tuneflow("verify", *common, "--collections", "tracks")
    assert text.returncode == 1 and "missing 1, extra 1, different 3" in text.stdout


def test_field_diff_names_paths() -> None:
    assert field_diff({"_id": 1, "a": {"b": [1, 2]}, "_version": 3}, {"_id": 1, "a": {"b": [1, 3]}, "c": 1}) == [
        {"path": "a.b[1]", "source": 2, "target": 3},
        {"path": "c", "source": None, "target": 1, "absent": "source"},
    ]


def test_since_rechecks_only_documents_written_above_a_version(tmp_path: Path, tuneflow: Run) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    generate_catalog(url, 800, seed=4)
    target = f"embedded://{tmp_path / 'store'}"
    common = ("--source", url, "--target", target, "--template", str(CATALOG_TEMPLATE), "--collections", "tracks")
    assert tuneflow("migrate", "start", *common).returncode == 0
    store = EmbeddedStore(tmp_path / "store")
    newest = max(doc["_version"] for batch in store.scan("tracks") for doc in batch)
    changed = dict(store.get_many("tracks", [5])[5])
    stale = dict(store.get_many("tracks", [6])[6])
    store.apply("tracks", [Change(5, newest + 10, {**changed, "title": "caught up wrongly"}),
                           Change(7, newest + 10, None)])
    store._db.execute("UPDATE tracks SET body = ? WHERE key = 6", (json.dumps({**stale, "title": "old"}),))
    store.close()

    result = tuneflow("verify", *common, "--since", str(newest), "--json")
    [report] = json.loads(result.stdout)["collections"]
    assert result.returncode == 1
    assert report["keys"] == {"missing": [], "extra": [], "different": [5]}  # 6 is older than --since
    assert report["target_documents"] == 1
    everything = json.loads(tuneflow("verify", *common, "--json").stdout)["collections"][0]["keys"]
    assert everything == {"missing": [7], "extra": [], "different": [5, 6]}


class _UnorderedStore(EmbeddedStore):
    """The embedded store read the way verify reads a store that cannot stream by key (FerretDB)."""

    def streams_by_key(self) -> bool:
        return False


def test_a_store_read_unordered_names_the_same_keys(tmp_path: Path, tuneflow: Run) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    generate_catalog(url, 1200, seed=5)
    target = tmp_path / "store"
    common = ("--source", url, "--target", f"embedded://{target}", "--template", str(CATALOG_TEMPLATE),
              "--collections", "tracks")
    assert tuneflow("migrate", "start", *common).returncode == 0
    store = EmbeddedStore(target)
    changed = dict(store.get_many("tracks", [700])[700])
    store.apply("tracks", [Change(700, 2**62, {**changed, "title": "x"}), Change(90, 2**62, None),
                           Change(9_999, 2**62, {"_id": 9_999})])
    store.close()
    with sqlite3.connect(tmp_path / "legacy.sqlite") as conn:  # the target's 600 is now extra, mid-range
        for table in ("track_artist", "track_genre", "track"):
            conn.execute(f"DELETE FROM {table} WHERE track_id = 600")

    engine, bound = load_bound(str(CATALOG_TEMPLATE), url, ["tracks"])
    found = {}
    try:
        for name, opened in (("ordered", EmbeddedStore), ("unordered", _UnorderedStore)):
            store = opened(target)
            try:
                with engine.connect() as conn:
                    diff = RangeVerifier(conn, bound.readers["tracks"], store, "tracks").run(chunk_rows=100)
            finally:
                store.close()
            found[name] = (diff.keys, diff.source_documents, diff.target_documents)
    finally:
        engine.dispose()
    assert found["ordered"] == found["unordered"]
    assert found["unordered"][0] == {"missing": [90], "extra": [600, 9_999], "different": [700]}
