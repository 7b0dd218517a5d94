"""A scratch FerretDB server of its own, on a fixed port, that a test or benchmark may stop and start again.

The stack's shared instance is left alone: this one runs the stack's binary (TUNEFLOW_FERRETDB_BIN) on a free
port, backed by a scratch PostgreSQL database or a scratch SQLite directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pymongo import MongoClient
from sqlalchemy import create_engine

from streams.catalog.dburl import to_sqlalchemy_url
from tests.integration.processes import free_port
from tests.integration.services import scratch_database


def ferretdb_binary() -> str:
    binary = os.environ.get("TUNEFLOW_FERRETDB_BIN", "")
    if not binary or not os.access(binary, os.X_OK):
        raise RuntimeError("TUNEFLOW_FERRETDB_BIN is not an executable: run `eval \"$(deploy/local/stack env)\"`")
    return binary


class FerretDBServer:
    """One FerretDB process; `stop()` and `start()` keep the address and the data."""

    def __init__(self, backend: list[str], workdir: Path, binary: str | None = None) -> None:
        self.binary = binary or ferretdb_binary()
        self.backend = backend
        self.workdir = workdir
        self.port = free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}"
        self.log_path = workdir / "ferretdb.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30) -> FerretDBServer:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [self.binary, *self.backend, f"--listen-addr=127.0.0.1:{self.port}", f"--state-dir={self.workdir}",
                 "--telemetry=disable", "--debug-addr=-", "--log-level=error"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with MongoClient(self.uri, serverSelectionTimeoutMS=500) as client:
                    client.admin.command("ping")
                return self
            except Exception as exc:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"scratch FerretDB did not start:\n{self.log_path.read_text()}") from exc
                time.sleep(0.2)

    def stop(self, kill: bool = False) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self._process.wait(30)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None


ID_INDEX_SQL = Path(__file__).resolve().parents[2] / "deploy" / "local" / "ferretdb" / "id-index.sql"


def index_ids(pg_url: str) -> None:
    """What the stack does to its FerretDB's database: a GIN `_id` index on every collection table it creates."""
    engine = create_engine(to_sqlalchemy_url(pg_url), isolation_level="AUTOCOMMIT")
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.execute(ID_INDEX_SQL.read_text())  # no parameters: its '%' stay as they are
        raw.commit()
    finally:
        raw.close()
        engine.dispose()


@contextlib.contextmanager
def ferretdb_on_pg(pg_url: str) -> Iterator[FerretDBServer]:
    with tempfile.TemporaryDirectory(prefix="tf-fdb-pg-") as workdir, scratch_database(pg_url, "tf_fdb") as pg:
        index_ids(pg)
        libpq_url = pg.replace("postgresql://", "postgres://", 1)
        server = FerretDBServer(["--handler=pg", f"--postgresql-url={libpq_url}"], Path(workdir)).start()
        try:
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def ferretdb_on_sqlite() -> Iterator[FerretDBServer]:
    with tempfile.TemporaryDirectory(prefix="tf-fdb-sqlite-") as workdir:
        server = FerretDBServer(["--handler=sqlite", f"--sqlite-url=file:{workdir}/"], Path(workdir)).start()
        try:
            yield server
        finally:
            server.stop()
