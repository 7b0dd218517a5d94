"""FerretDB on SQLite next to FerretDB on PostgreSQL, same binary, same documents, same run.

Starts two scratch FerretDB servers on free ports (the stack's own instance is left alone) and measures the
store ceilings on each; deploy/local/stack runs the faster backend by default.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from sqlalchemy import create_engine, text

from benchmarks import ceilings
from benchmarks.records import track_documents
from streams.catalog.dburl import to_sqlalchemy_url

# SQLite-backed FerretDB upserts a few dozen documents a second: a small sample tells the two apart.
COMPARE_UPSERT_DOCS = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _ferretdb(binary: str, backend: list[str], workdir: Path) -> Iterator[str]:
    port = _free_port()
    log = (workdir / "ferretdb.log").open("wb")
    process = subprocess.Popen(
        [binary, *backend, f"--listen-addr=127.0.0.1:{port}", f"--state-dir={workdir}", "--telemetry=disable",
         "--debug-addr=-", "--log-level=error"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    uri = f"mongodb://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with MongoClient(uri, serverSelectionTimeoutMS=500) as client:
                    client.admin.command("ping")
                break
            except Exception as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    log_text = (workdir / "ferretdb.log").read_text()
                    raise RuntimeError(f"scratch FerretDB did not start: {log_text}") from exc
                time.sleep(0.2)
        yield uri
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@contextlib.contextmanager
def _scratch_pg_database(pg_url: str) -> Iterator[str]:
    admin = create_engine(to_sqlalchemy_url(pg_url), isolation_level="AUTOCOMMIT")
    name = f"tf_bench_fdb_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        base = pg_url.rsplit("/", 1)[0].replace("postgresql://", "postgres://", 1)
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_all(env: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    binary = env.get("TUNEFLOW_FERRETDB_BIN", "")
    if not binary or not os.access(binary, os.X_OK):
        raise RuntimeError("TUNEFLOW_FERRETDB_BIN is not an executable: run `eval \"$(deploy/local/stack env)\"`")
    documents = track_documents(ceilings.STORE_DOCS)
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="tf-fdb-sqlite-") as workdir:
        print("ferretdb backend sqlite:", flush=True)
        with _ferretdb(binary, ["--handler=sqlite", f"--sqlite-url=file:{workdir}/"], Path(workdir)) as uri:
            results["sqlite"] = ceilings.store_ceilings(uri, documents, upsert_docs=COMPARE_UPSERT_DOCS, repeats=1)
    with tempfile.TemporaryDirectory(prefix="tf-fdb-pg-") as workdir, \
            _scratch_pg_database(env["TUNEFLOW_PG_URL"]) as pg:
        print("ferretdb backend pg:", flush=True)
        with _ferretdb(binary, ["--handler=pg", f"--postgresql-url={pg}"], Path(workdir)) as uri:
            results["pg"] = ceilings.store_ceilings(uri, documents, upsert_docs=COMPARE_UPSERT_DOCS, repeats=1)
    return results
