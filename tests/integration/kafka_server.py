"""A scratch single-node Kafka broker of its own, on free ports, that a test may stop and start again.

The stack's shared broker is left alone: this one runs the stack's cached broker jars (TUNEFLOW_KAFKA_LIBS, which
`deploy/local/stack env` exports) with the stack's server.properties, its own formatted data directory and a small
heap. `stop()` and `start()` keep the address and the data.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka.admin import AdminClient

from tests.integration.processes import free_port

LIBS_ENV = "TUNEFLOW_KAFKA_LIBS"
STACK_KAFKA = Path(__file__).resolve().parents[2] / "deploy" / "local" / "kafka"
STARTED = b"Kafka Server started"


def kafka_libs() -> str:
    libs = os.environ.get(LIBS_ENV, "")
    if not libs:  # an older `stack env` without the export: the stack's default cache
        cache = os.environ.get("TUNEFLOW_STACK_CACHE", str(Path.home() / ".cache" / "tuneflow-stack"))
        found = sorted(glob.glob(f"{cache}/kafka-*/libs"))
        libs = found[-1] if found else ""
    if not libs or not (Path(libs) / ".complete").exists():
        raise RuntimeError(f"{LIBS_ENV} is not the stack's Kafka jars: run `deploy/local/stack up kafka` and "
                           "`eval \"$(deploy/local/stack env)\"`")
    return libs


class KafkaServer:
    """One combined broker + controller (KRaft) in its own JVM, heap capped at `heap_mb`."""

    def __init__(self, workdir: Path, heap_mb: int = 320, libs: str | None = None) -> None:
        self.workdir = workdir
        self.port, self.controller_port = free_port(), free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = workdir / "kafka.log"
        self._config = workdir / "server.properties"
        self._config.write_text((STACK_KAFKA / "server.properties").read_text()
                                .replace("@DATA@", str(workdir / "data"))
                                .replace("@CONTROLLER_PORT@", str(self.controller_port))
                                .replace("@PORT@", str(self.port)))
        self._java = ["java", f"-Xms{heap_mb // 2}m", f"-Xmx{heap_mb}m", "-XX:+UseSerialGC",
                      "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
                      f"-Dlog4j2.configurationFile={STACK_KAFKA / 'log4j2.properties'}",
                      f"-Dkafka.logs.dir={workdir}", "-cp", f"{libs or kafka_libs()}/*"]
        self._process: subprocess.Popen[bytes] | None = None
        self._format()

    def _format(self) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        done = subprocess.run([*self._java, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                               "-c", str(self._config)], capture_output=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"formatting the scratch broker's storage failed:\n{done.stdout.decode()}"
                               f"{done.stderr.decode()}")

    def start(self, timeout_s: float = 60) -> KafkaServer:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen([*self._java, "kafka.Kafka", str(self._config)], stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                if STARTED in log.read() and self._answers():
                    return self
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop(kill=True)
                raise RuntimeError(f"scratch Kafka did not start:\n{self.log_path.read_text()[-4000:]}")
            time.sleep(0.2)

    def _answers(self) -> bool:
        try:
            AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
            return True
        except Exception:
            return False

    def stop(self, kill: bool = False) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None


@contextlib.contextmanager
def scratch_kafka(heap_mb: int = 320) -> Iterator[KafkaServer]:
    with tempfile.TemporaryDirectory(prefix="tf-kafka-") as workdir:
        server = KafkaServer(Path(workdir), heap_mb).start()
        try:
            yield server
        finally:
            server.stop()
