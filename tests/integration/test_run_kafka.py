"""`tuneflow run --binder kafka`: a legacy catalog on real PostgreSQL / MariaDB, through real Kafka topics, into
FerretDB, in one process; the run ends by itself once the snapshot is read and every topic is committed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from sqlalchemy import text

from streams.catalog.dburl import make_engine, mask_password
from streams.catalog.generator import generate_catalog
from streams.migration.verify import verify_tracks
from streams.stores.factory import open_store
from tests.integration.services import scratch_database, service_url, unique_name

TRACKS = 3000
BROKEN = (11, 2222)


@pytest.mark.parametrize("server", ["postgres", "mariadb"])
def test_a_snapshot_moves_through_kafka_into_ferretdb(server: str, mongo_uri: str, kafka_bootstrap: str,
                                                       tmp_path: Path) -> None:
    name, database = unique_name("run"), unique_name("tf_run")
    with scratch_database(service_url(server)) as legacy:
        generate_catalog(legacy, TRACKS, seed=5, chunk_size=1000)
        engine = make_engine(legacy)
        with engine.begin() as conn:
            conn.execute(text("UPDATE track SET duration_ms = -1 WHERE track_id IN (11, 2222)"))
        definition = f"jdbc --url={legacy} | normalize | mongo --database={database}"
        env = {**os.environ, "TUNEFLOW_HOME": str(tmp_path), "TUNEFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap,
               "TUNEFLOW_MONGO_URI": mongo_uri}
        env.pop("TUNEFLOW_DB_URL", None)
        result = subprocess.run([sys.executable, "-m", "streams.cli", "run", "--binder", "kafka", "--name", name,
                                 definition], capture_output=True, text=True, env=env, timeout=300)
        client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
        try:
            assert result.returncode == 0, result.stderr
            lines = result.stdout.splitlines()
            assert lines[0] == f"running stream {name} on the kafka binder: {mask_password(definition)}"
            password = legacy.split("://", 1)[1].split("@", 1)[0].partition(":")[2]
            assert password and f":{password}@" not in result.stdout + result.stderr
            assert lines[1].startswith(f"stream {name} done: every source exhausted and every record handled")
            assert lines[3] == f"  normalize      processor  ×1  in {TRACKS:,}  out {TRACKS - 2:,}  dead letters 2"
            assert lines[4] == f"  mongo          sink       ×1  in {TRACKS - 2:,}  written {TRACKS - 2:,}"

            store = open_store(mongo_uri, database=database)
            try:
                report = verify_tracks(engine, store, batch_size=1000)
            finally:
                store.close()
            assert report.ok and report.source_rows == report.store_documents == TRACKS - len(BROKEN)
        finally:
            client.drop_database(database)
            client.close()
            engine.dispose()


@pytest.mark.parametrize("server", ["postgres", "mariadb"])
def test_wrong_credentials_for_the_legacy_catalog_exit_2_without_the_password(server: str, tmp_path: Path) -> None:
    url = service_url(server)
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    wrong = "not-the-Pa55word-42"
    env = {**os.environ, "TUNEFLOW_HOME": str(tmp_path)}
    env.pop("TUNEFLOW_DB_URL", None)
    result = subprocess.run([sys.executable, "-m", "streams.cli", "run",
                             f"jdbc --url={scheme}://{user.split(':')[0]}:{wrong}@{host} | log"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "refused the credentials" in result.stderr.splitlines()[-1]
    assert wrong not in result.stdout + result.stderr and "Traceback" not in result.stderr
