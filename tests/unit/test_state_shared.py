"""The platform state database shared by several users at once: two stores on one file, concurrent releases, and
processes and threads creating new databases at the same moment."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from streams.errors import ConfigError
from streams.state import StateStore, open_state
from tests.unit.test_state import PARSED_PROPERTIES, RAW_PROPERTIES


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


# --- several users of one database ----------------------------------------------------------------------


def test_two_stores_on_the_same_file_see_each_others_writes(db_url: str) -> None:
    with open_state(db_url) as one, open_state(db_url) as two:
        one.create_stream("s", "kafka | log", "kafka | log")
        assert two.get_stream("s").canonical == "kafka | log"
        two.save_deployment_properties("s", RAW_PROPERTIES, PARSED_PROPERTIES)
        assert one.get_stream("s").deployment_properties_raw == RAW_PROPERTIES
        with pytest.raises(ConfigError, match="already exists"):
            two.create_stream("s", "kafka | file", "kafka | file")


def test_concurrent_releases_from_two_stores_get_distinct_consecutive_numbers(db_url: str) -> None:
    with open_state(db_url) as one, open_state(db_url) as two:
        one.create_stream("s", "kafka | log", "kafka | log")
        errors: list[BaseException] = []

        def add(store: StateStore, tag: str) -> None:
            try:
                for n in range(10):
                    store.add_release("s", {"by": tag, "n": n}, status="failed")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=add, args=(store, tag)) for store, tag in ((one, "one"), (two, "two"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        releases = one.releases("s")
        assert [r.number for r in releases] == list(range(1, 21))
        assert sorted((r.manifest["by"], r.manifest["n"]) for r in releases) == sorted(
            (tag, n) for tag in ("one", "two") for n in range(10)
        )


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    go = tmp_path / "go"
    script = (
        "import pathlib, sys, time\n"
        "from streams.state import open_state\n"
        "go = pathlib.Path(sys.argv[2])\n"
        "while not go.exists():\n"
        "    time.sleep(0.005)\n"
        "with open_state(sys.argv[1]) as store:\n"
        "    store.register_app('sink', 'log-' + sys.argv[3], 'python:sinks.log:LogSink', version='1')\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, url, str(go), str(n)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(4)
    ]
    time.sleep(1.5)
    go.touch()
    results = [process.communicate(timeout=120) for process in processes]
    assert [(process.returncode, err) for process, (_out, err) in zip(processes, results, strict=True)] == [
        (0, "")
    ] * 4
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0004"]
            names = conn.execute(text("SELECT name FROM app_registrations ORDER BY name")).scalars().all()
    finally:
        engine.dispose()
    assert names == ["log-0", "log-1", "log-2", "log-3"]


def test_threads_opening_new_databases_at_once_all_succeed(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / f'db{n % 3}.db'}" for n in range(9)]
    barrier = threading.Barrier(len(urls))
    errors: list[BaseException] = []

    def open_one(url: str) -> None:
        try:
            barrier.wait(timeout=30)
            with open_state(url) as store:
                store.list_streams()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    for n in range(3):
        with open_state(f"sqlite:///{tmp_path / f'db{n}.db'}") as store, store.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0004"]
