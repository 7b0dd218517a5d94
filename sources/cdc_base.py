"""What the CDC sources share: the initial snapshot's options, and an app that hands its batches to a capture
(`streams/cdc/postgres.py`, `streams/cdc/mysql.py`) and tells it which are durable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, TypeVar

from pydantic import Field

from sources.base import AppOptions, SourceApp
from streams.records import Record


class Capture(Protocol):
    def poll(self, max_records: int, timeout_s: float) -> list[Record]: ...

    def ack(self, count: int) -> None: ...

    def close(self) -> None: ...


class SnapshotOptions(AppOptions):
    snapshot: Literal["initial", "never", "always"] = Field(
        default="never", description="initial: first read every table (key-ordered chunks, op=r, versioned with the "
                                     "log position of a consistent snapshot, so later changes supersede them), once "
                                     "per log position history, resuming after its last durable chunks; always: "
                                     "the same at every start of the source (an interrupted read resumes).")
    snapshot_chunk: int = Field(default=5000, ge=1, le=100_000, description="Most rows per snapshot chunk.")
    snapshot_parallel: int = Field(default=2, ge=1, le=16, description="Snapshot readers, each on its own "
                                                                       "connection in the same consistent snapshot, "
                                                                       "reading parts of the tables side by side.")


OptionsT = TypeVar("OptionsT", bound=AppOptions)


class CdcSource(SourceApp[OptionsT]):
    """A source whose `setup` sets `self.capture`; polls, acknowledgements and shutdown go to it."""

    capture: Capture | None = None

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        assert self.capture is not None
        return self.capture.poll(max_records, timeout_s)

    def ack(self, records: Sequence[Record]) -> None:
        assert self.capture is not None
        self.capture.ack(len(records))

    def close(self) -> None:
        if self.capture is not None:
            self.capture.close()
