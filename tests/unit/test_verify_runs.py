"""`tuneflow verify` as a run on SQLite into the embedded store: killed and resumed, shown, and asked for from code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.migration.verify_runs import VerifyRuns, latest_clean_verify
from streams.state import open_state
from streams.stores.base import Change
from streams.stores.embedded import EmbeddedStore
from tests.migration_oracle import CATALOG_TEMPLATE
from tests.unit.cli import Run, migrated_catalog

TRACKS = 2000


@pytest.fixture
def migrated(tmp_path: Path, tuneflow: Run) -> tuple[str, str]:
    return migrated_catalog(tuneflow, tmp_path, TRACKS, seed=6)


def _tamper(tmp_path: Path, *keys: int) -> None:
    store = EmbeddedStore(tmp_path / "store")
    try:
        stored = store.get_many("tracks", list(keys))
        store.apply("tracks", [Change(key, 2**62, {**stored[key], "title": "Tampered"}) for key in keys])
    finally:
        store.close()


def test_a_killed_verify_resumes_without_comparing_finished_ranges_again(
        migrated: tuple[str, str], tuneflow: Run, tmp_path: Path) -> None:
    source, target = migrated
    _tamper(tmp_path, 10, TRACKS - 10)  # one difference found before the kill, one after the resume
    home = tmp_path / "home"
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "verify", "--source", source, "--target", target, "--template",
         str(CATALOG_TEMPLATE), "--collections", "tracks", "--chunk-rows", "50", "--throttle", "600"],
        env={**os.environ, "TUNEFLOW_HOME": str(home)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_id, at_kill = "", {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
            listed = tuneflow("verify", "list", "--json")
            found = json.loads(listed.stdout) if listed.returncode == 0 else []
            if found and found[0]["ranges"] and found[0]["ranges_done"] >= 0.3 * found[0]["ranges"]:
                process.send_signal(signal.SIGKILL)
                run_id = found[0]["id"]
                break
    finally:
        process.kill()
        process.wait(10)
    assert process.returncode == -signal.SIGKILL, "the verify ended before it could be killed"

    with open_state(f"sqlite:///{home / 'tuneflow.db'}") as state:
        at_kill = VerifyRuns(state).chunk_reads(run_id)
    done_at_kill = {item for item, (done, _) in at_kill.items() if done}
    assert 0.3 * len(at_kill) <= len(done_at_kill) < len(at_kill)
    stopped = tuneflow("verify", "status", run_id)
    assert f"verify {run_id}: stopped" in stopped.stdout
    assert "different 1" in stopped.stdout and f"resume with: tuneflow verify resume {run_id}" in stopped.stdout

    resumed = tuneflow("verify", "resume", run_id, "--json")
    assert resumed.returncode == 1, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["id"] == run_id and report["status"] == "finished" and report["ok"] is False
    [tracks] = report["collections"]
    assert tracks["keys"] == {"missing": [], "extra": [], "different": [10, TRACKS - 10]}
    assert tracks["source_documents"] == tracks["target_documents"] == TRACKS
    with open_state(f"sqlite:///{home / 'tuneflow.db'}") as state:
        after = VerifyRuns(state).chunk_reads(run_id)
    assert all(after[item] == (True, 1) for item in done_at_kill)  # never compared again
    assert all(done for done, _ in after.values())

    listed = tuneflow("verify", "list")
    assert run_id in listed.stdout and "finished, DIFFERENT" in listed.stdout
    again = tuneflow("verify", "resume", run_id)
    assert again.returncode == 1 and "different 2" in again.stdout  # a finished run shows its verdict


def test_a_clean_verify_is_what_a_gate_finds_from_code(migrated: tuple[str, str], tuneflow: Run,
                                                       tmp_path: Path) -> None:
    source, target = migrated
    common = ("--source", source, "--target", target, "--template", str(CATALOG_TEMPLATE))
    state_url = f"sqlite:///{tmp_path / 'home' / 'tuneflow.db'}"
    before = tuneflow("verify", *common, "--collections", "tracks,albums", "--json")
    assert before.returncode == 0, before.stderr
    clean = json.loads(before.stdout)
    with open_state(state_url) as state:
        found = latest_clean_verify(state, source, target, ["tracks"])
        assert found is not None and found.id == clean["id"] and found.ok is True
        assert found.finished_at is not None and found.collections == ["tracks", "albums"]
        assert latest_clean_verify(state, source, target, ["artists"]) is None  # never verified
        assert latest_clean_verify(state, source, target, ["tracks"], newer_than=found.finished_at) is None
        assert latest_clean_verify(state, source, target, ["tracks"], at_position=1) is None  # SQLite: no log
        assert latest_clean_verify(state, source, f"{target}-elsewhere", ["tracks"]) is None

    _tamper(tmp_path, 5)
    assert tuneflow("verify", *common, "--collections", "tracks").returncode == 1
    since = tuneflow("verify", *common, "--collections", "tracks", "--since", "0")
    assert since.returncode == 1
    with open_state(state_url) as state:
        still = latest_clean_verify(state, source, target, ["tracks"])
        assert still is not None and still.id == clean["id"]  # the newer runs found a difference
        newest = VerifyRuns(state).latest_finished(source, target, ["tracks"], full=False)
        assert newest is not None and newest.ok is False and newest.since == 0

    status = json.loads(tuneflow("verify", "status", clean["id"], "--json").stdout)
    assert status["ok"] is True and status["ranges_done"] == status["ranges"] and status["status"] == "finished"
    assert "finished, clean" in tuneflow("verify", "status", clean["id"]).stdout
    assert tuneflow("verify", "status", "nope").returncode == 2


def test_verify_without_a_source_says_what_is_missing(tuneflow: Run) -> None:
    result = tuneflow("verify", "--target", "embedded:///tmp/x", "--template", str(CATALOG_TEMPLATE))
    assert result.returncode == 2 and "Missing option '--source'" in result.stderr
    assert "no verify runs yet" in tuneflow("verify", "list").stdout
