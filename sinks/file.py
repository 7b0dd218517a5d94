"""`file` sink: append each record's value as one NDJSON line, fsynced per batch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import orjson
from pydantic import Field

from sinks.base import AppOptions, Outcome, SinkApp
from streams.records import Record


class FileOptions(AppOptions):
    dir: Path = Field(description="Directory to write into (created if missing).")
    name: str | None = Field(default=None, pattern=r"^[\w.-]+$",
                             description="File name [default: <stream>.<label>-<instance>.ndjson].")


class FileSink(SinkApp[FileOptions]):
    name = "file"
    options_model = FileOptions

    def setup(self) -> None:
        ctx = self.context
        self.options.dir.mkdir(parents=True, exist_ok=True)
        filename = self.options.name or f"{ctx.stream}.{ctx.label}-{ctx.instance}.ndjson"
        self.path = self.options.dir / filename
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open for the app's life

    def write(self, batch: Sequence[Record]) -> Outcome:
        lines = bytearray()
        for record in batch:
            value = record.value if isinstance(record.value, bytes) else orjson.dumps(record.value)
            lines += value.replace(b"\n", b" ") + b"\n"
        self._file.write(lines)
        self._file.flush()
        os.fsync(self._file.fileno())
        return Outcome()

    def close(self) -> None:
        self._file.close()
