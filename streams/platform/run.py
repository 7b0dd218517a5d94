"""A whole stream in this process (`tuneflow run`, `tuneflow demo`): the manifest, the embedded deployer, the end.

A run whose sources are all snapshots ends by itself once everything is handled; otherwise it runs until `stop` is
set (Ctrl-C). On the memory binder the dead letters would vanish with the process, so they are written to NDJSON
files when the run ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from streams.binders.base import Binder
from streams.deployers.embedded import AppTotals, EmbeddedDeployer
from streams.dsl import StreamDefinition, check_stream_name, parse
from streams.errors import ConfigError
from streams.platform.manifest import build_manifest
from streams.registry import Registry

DLQ_EXPORT_BATCH = 10_000


@dataclass
class RunResult:
    stream: str
    definition: str
    seconds: float
    finished: bool  # True: the sources were exhausted and every record handled; False: stopped
    totals: list[AppTotals]
    dead_letter_files: dict[str, Path] = field(default_factory=dict)
    late: list[str] = field(default_factory=list)


@dataclass
class EmbeddedRun:
    """One run: `start()`, then `wait()`; `deployer` exposes the live counters for progress displays."""

    name: str
    definition: str
    binder: Binder
    registry: Registry
    properties: dict[str, str] = field(default_factory=dict)
    existing: dict[str, StreamDefinition] = field(default_factory=dict)
    batch_size: int = 500
    dlq_dir: Path | None = None
    deployer: EmbeddedDeployer = field(init=False)
    canonical: str = field(init=False, default="")

    def start(self, port: int | None = None) -> None:
        check_stream_name(self.name)
        if self.name in self.existing:
            raise ConfigError(f"a stream named '{self.name}' is defined: its topics would be shared with it; "
                              "run under another --name")
        parsed = parse(self.name, self.definition)
        manifest = build_manifest(parsed, self.properties, self.registry, self.existing)
        self.canonical = manifest["definition"]
        self.deployer = EmbeddedDeployer(self.binder, batch_size=self.batch_size)
        self._started = time.monotonic()
        self.deployer.start(manifest, port=port)

    def wait(self, stop: threading.Event, on_tick: Callable[[], None] | None = None) -> RunResult:
        """Until done or stopped; then every instance drains and stops. An instance's error is raised here."""
        try:
            self.deployer.wait(stop, on_tick=on_tick)
        finally:
            finished = not stop.is_set() and not self.deployer.failures() and self.deployer.bounded()
            late = self.deployer.stop()
        try:
            failures = self.deployer.failures()
            if failures:
                error = failures[0].error
                assert error is not None
                raise error
            result = RunResult(self.name, self.canonical, time.monotonic() - self._started, finished,
                               self.deployer.totals(), late=late)
            if self.binder.name == "memory" and self.dlq_dir is not None:
                result.dead_letter_files = self._export_dead_letters(result.totals)
            return result
        finally:
            self.binder.close()

    def _export_dead_letters(self, totals: list[AppTotals]) -> dict[str, Path]:
        """Each DLQ topic with records, as NDJSON lines of key, value and headers."""
        files: dict[str, Path] = {}
        for total in totals:
            if not total.dead_letters:
                continue
            topic = f"{self.name}.{total.label}.dlq"
            assert self.dlq_dir is not None
            self.dlq_dir.mkdir(parents=True, exist_ok=True)
            path = self.dlq_dir / f"{topic}.ndjson"
            reader = self.binder.input([topic], group=f"{self.name}-dlq-export", instance="0")
            with path.open("wb") as out:
                while letters := reader.poll(DLQ_EXPORT_BATCH, 0.05):
                    out.write(b"".join(orjson.dumps({
                        "key": _text(r.key), "value": _text(r.value),
                        "headers": {k: _text(v) for k, v in r.headers.items()}}) + b"\n" for r in letters))
            reader.close()
            files[topic] = path
        return files


def _text(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value

