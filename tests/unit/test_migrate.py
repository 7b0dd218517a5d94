"""`tuneflow migrate` on SQLite into the embedded store: chunked, checkpointed, reported from any shell."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.catalog.generator import generate_catalog
from streams.serde import business_fields, canonical_json
from streams.stores.embedded import EmbeddedStore
from tests.migration_oracle import CATALOG_TEMPLATE
from tests.unit.cli import Run


@pytest.fixture(scope="module")
def legacy_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('legacy') / 'legacy.sqlite'}"
    generate_catalog(url, 2500, seed=9)
    return url


def _contents(directory: Path, collection: str) -> dict[object, bytes]:
    store = EmbeddedStore(directory)
    try:
        return {doc["_id"]: canonical_json(business_fields(doc)) for batch in store.scan(collection) for doc in batch}
    finally:
        store.close()


def test_migrate_start_writes_every_collection_and_reports_the_run(
        legacy_url: str, tuneflow: Run, tmp_path: Path) -> None:
    target = tmp_path / "store"
    result = tuneflow("migrate", "start", "--source", legacy_url, "--target", f"embedded://{target}",
                      "--template", str(CATALOG_TEMPLATE), "--chunk-rows", "400")
    assert result.returncode == 0, result.stderr
    assert "finished" in result.stdout
    assert len(_contents(target, "tracks")) == 2500
    assert _contents(target, "albums") and _contents(target, "artists")

    status = json.loads(tuneflow("migrate", "status", "--json").stdout)
    assert status["status"] == "finished"
    assert status["chunks_done"] == status["chunks"] > 7
    assert status["rows_done"] == status["rows_planned"] == status["per_collection"]["tracks"]["rows_done"] + \
        status["per_collection"]["albums"]["rows_done"] + status["per_collection"]["artists"]["rows_done"]
    assert status["per_collection"]["tracks"]["rows_done"] == 2500
    listed = tuneflow("migrate", "list")
    assert status["id"] in listed.stdout
    assert tuneflow("migrate", "resume", status["id"]).returncode == 0  # nothing left to do
    assert tuneflow("migrate", "cancel", status["id"]).returncode == 2


def test_only_the_named_collections_and_a_missing_column_writes_nothing(
        legacy_url: str, tuneflow: Run, tmp_path: Path) -> None:
    target = tmp_path / "store"
    result = tuneflow("migrate", "start", "--source", legacy_url, "--target", f"embedded://{target}",
                      "--template", str(CATALOG_TEMPLATE), "--collections", "artists")
    assert result.returncode == 0, result.stderr
    assert not _contents(target, "tracks") and _contents(target, "artists")

    broken = tmp_path / "broken.yaml"
    broken.write_text(CATALOG_TEMPLATE.read_text().replace("convert: upper}", "convert: upper}\n      iswc: iswc"))
    elsewhere = tmp_path / "other"
    result = tuneflow("migrate", "start", "--source", legacy_url, "--target", f"embedded://{elsewhere}",
                      "--template", str(broken))
    assert result.returncode == 2
    assert "unknown column 'iswc' in table 'track'" in result.stderr
    assert not elsewhere.exists()
    assert "no migrations" not in tuneflow("migrate", "list").stdout


def test_status_of_an_unknown_run_suggests_one(tuneflow: Run) -> None:
    result = tuneflow("migrate", "status", "nope")
    assert result.returncode == 2 and "unknown migration 'nope'" in result.stderr


def _in_background(legacy_url: str, tmp_path: Path) -> subprocess.Popen[str]:
    """A throttled `migrate start` in its own process, sharing the test's TUNEFLOW_HOME."""
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "migrate", "start", "--source", legacy_url, "--target",
         f"embedded://{tmp_path / 'store'}", "--template", str(CATALOG_TEMPLATE), "--chunk-rows", "100",
         "--throttle", "200"], env={**os.environ, "TUNEFLOW_HOME": str(tmp_path / "home")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_past(tuneflow: Run, chunks: int) -> str:
    """The id of the run in progress once more than `chunks` of its chunks are done."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listed = tuneflow("migrate", "list", "--json")
        runs = json.loads(listed.stdout) if listed.returncode == 0 else []
        if runs and runs[0]["chunks_done"] > chunks:
            return str(runs[0]["id"])
        time.sleep(0.2)
    raise AssertionError("the migration made no progress")


def test_cancel_stops_a_running_migration_from_another_shell(legacy_url: str, tuneflow: Run, tmp_path: Path) -> None:
    process = _in_background(legacy_url, tmp_path)
    try:
        run_id = _run_past(tuneflow, 0)
        assert tuneflow("migrate", "cancel", run_id).returncode == 0
        out, _err = process.communicate(timeout=60)
    finally:
        process.kill()
    status = json.loads(tuneflow("migrate", "status", run_id, "--json").stdout)
    assert process.returncode == 0 and "cancelled" in out
    assert status["status"] == "cancelled" and status["chunks_done"] < status["chunks"]
    assert tuneflow("migrate", "resume", run_id).returncode == 2


def test_ctrl_c_leaves_a_resumable_run(legacy_url: str, tuneflow: Run, tmp_path: Path) -> None:
    process = _in_background(legacy_url, tmp_path)
    try:
        run_id = _run_past(tuneflow, 1)
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130 and f"tuneflow migrate resume {run_id}" in err
    assert json.loads(tuneflow("migrate", "status", "--json").stdout)["status"] == "interrupted"
    resumed = tuneflow("migrate", "resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert len(_contents(tmp_path / "store", "tracks")) == 2500


def test_a_clean_verify_for_a_migration_passes_the_switch_gate_and_a_dirty_one_does_not(
        legacy_url: str, tuneflow: Run, tmp_path: Path) -> None:
    target = f"embedded://{tmp_path / 'store'}"
    common = ["--source", legacy_url, "--target", target, "--template", str(CATALOG_TEMPLATE)]
    assert tuneflow("migrate", "start", *common, "--collections", "artists").returncode == 0
    assert tuneflow("verify", *common, "--collections", "artists", "--migration", "m1").returncode == 0
    assert tuneflow("verify", *common, "--collections", "artists", "--migration", "m2").returncode == 0
    assert tuneflow("verify", *common, "--collections", "artists", "--migration", "bad name!").returncode == 2
    for migration in ("m1", "m2"):
        assert tuneflow("switch", "forward", "--binder", "memory", "--migration", migration).returncode == 0

    def verify_check(migration: str) -> dict[str, object]:
        refused = tuneflow("switch", "forward", "--binder", "memory", "--migration", migration, "--json")
        assert refused.returncode == 1  # the memory binder's backlog cannot be read from here
        history = json.loads(tuneflow("switch", "history", "--binder", "memory", "--migration", migration,
                                      "--json").stdout)
        return next(check for check in history[-1]["gate"] if check["check"] == "clean verify")

    assert verify_check("m1")["ok"] is True
    store = EmbeddedStore(tmp_path / "store")
    try:  # m2's target drifts, and its next verify finds it: the gate now refuses m2, not m1
        store.drop("artists")
    finally:
        store.close()
    assert tuneflow("verify", *common, "--collections", "artists", "--migration", "m2").returncode == 1
    assert verify_check("m1")["ok"] is True
    m2 = verify_check("m2")  # the newest verify of m2 found differences: its earlier clean run no longer counts
    assert m2["ok"] is False and str(m2["detail"]).startswith("no clean verify recorded")
