"""`tuneflow verify --recheck`: a difference in flight during the pass (its write lands a moment later) is read again
until both sides agree and is cleared, counted as such; a lasting difference stays one. SQLite into the embedded
store."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from streams.migration.verify_runs import latest_clean_verify
from streams.state import open_state
from streams.stores.base import Change
from streams.stores.embedded import EmbeddedStore
from tests.migration_oracle import CATALOG_TEMPLATE
from tests.unit.cli import Run, migrated_catalog

TRACKS = 300
IN_FLIGHT, LOST = 10, 20


@pytest.fixture
def migrated(tmp_path: Path, tuneflow: Run) -> tuple[str, str]:
    return migrated_catalog(tuneflow, tmp_path, TRACKS, seed=7)


def behind(tmp_path: Path, key: int, delay_s: float | None) -> threading.Thread:
    """The target holds another title for `key`; after `delay_s` (None: never) the right one lands."""
    store = EmbeddedStore(tmp_path / "store")
    try:
        right = store.get_many("tracks", [key])[key]
        store.apply("tracks", [Change(key, 2**61, {**right, "title": "Not yet"})])
    finally:
        store.close()

    def land() -> None:
        if delay_s is None:
            return
        time.sleep(delay_s)
        writer = EmbeddedStore(tmp_path / "store")
        try:
            writer.apply("tracks", [Change(key, 2**62, right)])
        finally:
            writer.close()

    return threading.Thread(target=land, daemon=True)


def verify(tuneflow: Run, source: str, target: str, *extra: str) -> tuple[int, dict[str, object]]:
    result = tuneflow("verify", "--source", source, "--target", target, "--template", str(CATALOG_TEMPLATE),
                      "--collections", "tracks", "--chunk-rows", "100", "--json", *extra)
    return result.returncode, json.loads(result.stdout)


def test_a_write_landing_during_the_recheck_is_cleared_and_the_run_counts_as_clean(
        migrated: tuple[str, str], tuneflow: Run, tmp_path: Path) -> None:
    source, target = migrated
    landing = behind(tmp_path, IN_FLIGHT, delay_s=0.8)
    landing.start()
    code, report = verify(tuneflow, source, target, "--recheck", "5", "--migration", "catalog")
    landing.join()
    [tracks] = report["collections"]  # type: ignore[misc]
    assert code == 0 and report["ok"] is True
    assert (tracks["different"], tracks["cleared"]) == (0, 1)
    with open_state(f"sqlite:///{tmp_path / 'home' / 'tuneflow.db'}") as state:
        assert latest_clean_verify(state, source, target, ["tracks"]) is not None


def test_a_lasting_difference_stays_one_after_the_recheck(migrated: tuple[str, str], tuneflow: Run,
                                                         tmp_path: Path) -> None:
    source, target = migrated
    landing = behind(tmp_path, IN_FLIGHT, delay_s=0.5)
    behind(tmp_path, LOST, delay_s=None)
    landing.start()
    started = time.monotonic()
    code, report = verify(tuneflow, source, target, "--recheck", "2")
    landing.join()
    [tracks] = report["collections"]  # type: ignore[misc]
    assert code == 1 and report["ok"] is False
    assert (tracks["different"], tracks["keys"]["different"], tracks["cleared"]) == (1, [LOST], 1)
    assert time.monotonic() - started >= 2  # the lasting one was read again for the whole time given


def test_without_recheck_a_write_in_flight_is_a_difference(migrated: tuple[str, str], tuneflow: Run,
                                                          tmp_path: Path) -> None:
    source, target = migrated
    behind(tmp_path, IN_FLIGHT, delay_s=None)
    code, report = verify(tuneflow, source, target)
    [tracks] = report["collections"]  # type: ignore[misc]
    assert code == 1 and (tracks["different"], tracks["cleared"]) == (1, 0)
