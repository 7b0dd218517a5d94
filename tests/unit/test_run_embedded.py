"""`tuneflow run "<dsl>"`: a whole stream in one process on the memory binder, as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from sources.jdbc import TemplateChunks
from streams.catalog.dburl import make_engine
from streams.catalog.generator import generate_catalog
from streams.migration.source import load_bound
from streams.migration.verify import verify_tracks
from streams.stores.embedded import EmbeddedStore
from tests.migration_oracle import CATALOG_TEMPLATE

TRACKS = 2000
BROKEN = {7: "duration_ms = -5", 700: "duration_ms = -1", 1999: "disc_no = 0"}


def _tuneflow(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TUNEFLOW_HOME": str(home)}
    env.pop("TUNEFLOW_DB_URL", None)
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture
def legacy(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    generate_catalog(url, TRACKS, seed=3, chunk_size=500)
    engine = make_engine(url)
    with engine.begin() as conn:
        for track_id, change in BROKEN.items():
            conn.execute(text(f"UPDATE track SET {change} WHERE track_id = :id"), {"id": track_id})
    engine.dispose()
    return url


def test_a_snapshot_stream_runs_to_its_end_and_keeps_the_bad_rows_as_dead_letters(
        tmp_path: Path, legacy: str) -> None:
    store = tmp_path / "store"
    definition = f"jdbc --url={legacy} | normalize | mongo --uri=embedded://{store}"
    result = _tuneflow(tmp_path, "run", definition, "--properties", "deployer.normalize.count=2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"running stream run on the memory binder: {definition}"
    assert lines[1].startswith("stream run done: every source exhausted and every record handled (")
    assert lines[2:5] == [
        f"  jdbc           source     ×1  out {TRACKS:,}",
        f"  normalize      processor  ×2  in {TRACKS:,}  out {TRACKS - len(BROKEN):,}  dead letters {len(BROKEN)}",
        f"  mongo          sink       ×1  in {TRACKS - len(BROKEN):,}  written {TRACKS - len(BROKEN):,}",
    ]
    dlq = tmp_path / "runs" / "run" / "run.normalize.dlq.ndjson"
    assert lines[5] == f"dead letters of run.normalize.dlq: {dlq}"
    letters = [orjson.loads(line) for line in dlq.read_bytes().splitlines()]
    assert sorted(int(letter["key"]) for letter in letters) == sorted(BROKEN)
    reasons = {int(letter["key"]): orjson.loads(letter["headers"]["tf-error-reasons"]) for letter in letters}
    assert reasons[7][0]["field"] == "duration_ms" and reasons[1999][0]["field"] == "disc_no"

    engine, documents = make_engine(legacy), EmbeddedStore(store)
    try:
        report = verify_tracks(engine, documents, batch_size=500)
    finally:
        documents.close()
        engine.dispose()
    # Every valid legacy track is in the store, identical; the broken rows are only in the dead letters.
    assert report.ok and report.source_rows == report.store_documents == TRACKS - len(BROKEN)


def test_an_endless_stream_runs_until_ctrl_c_then_drains(tmp_path: Path) -> None:
    env = {**os.environ, "TUNEFLOW_HOME": str(tmp_path)}
    process = subprocess.Popen([sys.executable, "-m", "streams.cli", "run", "kafka --topic=raw | log"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("running stream run on the memory binder")
        assert process.stdout.readline() == "its sources do not end: Ctrl-C stops it\n"
        time.sleep(0.5)
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.splitlines()[0].startswith("stream run stopped (")


@pytest.mark.parametrize(("definition", "message"), [
    ("jdbc --url=sqlite:///nowhere.db | normalise | log", "Error: unknown processor app 'normalise'. "
                                                           "Did you mean 'normalize'? Known: assemble, normalize"),
    ("jdbc | log", "Error: invalid options for app 'jdbc': --url: required"),
    ("jdbc --url=sqlite:///{tmp}/empty.db | log", "Error: sqlite:///{tmp}/empty.db holds no legacy catalog "
                                                  "(no table 'track'); make one with `tuneflow catalog generate`"),
])
def test_mistakes_exit_2_with_the_reason(tmp_path: Path, definition: str, message: str) -> None:
    result = _tuneflow(tmp_path, "run", definition.format(tmp=tmp_path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == message.format(tmp=tmp_path)
    assert "Traceback" not in result.stderr


def test_jdbc_with_a_template_streams_its_documents_which_verify_clean(tmp_path: Path) -> None:
    legacy = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    generate_catalog(legacy, TRACKS, seed=3, chunk_size=500)
    store = f"embedded://{tmp_path / 'store'}"
    definition = f"jdbc --url={legacy} --template={CATALOG_TEMPLATE} --chunk-rows=300 | normalize | mongo --uri={store}"
    result = _tuneflow(tmp_path, "run", definition)
    assert result.returncode == 0, result.stderr
    assert f"  mongo          sink       ×1  in {TRACKS:,}  written {TRACKS:,}" in result.stdout
    verified = _tuneflow(tmp_path, "verify", "--source", legacy, "--target", store, "--template",
                         str(CATALOG_TEMPLATE), "--collections", "tracks")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_instances_of_a_templated_jdbc_share_its_chunks(tmp_path: Path) -> None:
    legacy = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    generate_catalog(legacy, 1000, seed=5)
    engine, bound = load_bound(str(CATALOG_TEMPLATE), legacy, ["tracks"])
    keys: list[list[int]] = []
    with engine.connect() as conn:
        for instance in (0, 1):
            chunks = TemplateChunks(bound.readers["tracks"], 64, 2, instance, None)
            mine: list[int] = []
            while not chunks.done:
                mine += [int(record.key) for record in chunks.next(conn, 100)]
            keys.append(mine)
    engine.dispose()
    assert sorted(keys[0] + keys[1]) == list(range(1, 1001))
    assert not set(keys[0]) & set(keys[1]) and keys[0][:64] == list(range(1, 65)) and keys[1][0] == 65
