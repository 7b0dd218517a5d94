"""Starts a peer's worker as its own OS process, with the interface the app benchmarks time (start, stop, logs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
