"""A live writer: a client that keeps sending track updates to an `http` source, as a catalog's writers would.

It edits a pool of tracks (each update a whole track document with a newer `updated_at`), sends them as NDJSON
batches at a steady rate from a thread, and remembers the newest version the source acknowledged for every track.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

Document = dict[str, Any]


@dataclass
class WriterCounts:
    batches: int = 0
    accepted: int = 0
    rejected: int = 0
    refused: int = 0  # whole requests answered with an error (503 while the source is busy, say)
    reads: int = 0
    reads_by_store: dict[str, int] = field(default_factory=dict)
    reads_back_in_time: int = 0  # a GET older than what an earlier GET of the same track returned


@dataclass
class LiveWriter:
    """Updates `documents` (track documents, as the catalog's `tracks`) through `url`'s POST /tracks/batch."""

    url: str
    token: str
    documents: list[Document]
    rate_per_s: float = 200.0
    batch: int = 50
    seed: int = 7
    counts: WriterCounts = field(default_factory=WriterCounts)
    acknowledged: dict[int, str] = field(default_factory=dict)  # track id → newest updated_at acknowledged
    read_after_write: bool = True  # after each batch, GET one track of the batch before
    last_key: int | None = None

    def __post_init__(self) -> None:
        if not self.documents:
            raise ValueError("the live writer needs at least one track to edit")
        self._random = random.Random(self.seed)
        self._running = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self._clock = datetime.now(UTC)
        self._client = httpx.Client(base_url=self.url, timeout=30.0,
                                    headers={"Authorization": f"Bearer {self.token}",
                                             "Content-Type": "application/x-ndjson"})
        self.error: str | None = None
        self._seen: dict[int, str] = {}  # track id → newest updated_at a GET returned

    def start(self) -> LiveWriter:
        self._running.set()
        self._thread = threading.Thread(target=self._loop, name="tuneflow-live-writer", daemon=True)
        self._thread.start()
        return self

    def pause(self) -> None:
        """Stop sending; returns once the batch in flight was answered."""
        self._running.clear()
        self._idle.wait(60)

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()
        if self._thread is not None:
            self._thread.join(60)
        self._client.close()

    def _loop(self) -> None:
        interval = self.batch / self.rate_per_s
        next_at = time.monotonic()
        while not self._stop.is_set():
            if not self._running.is_set():
                self._idle.set()
                self._running.wait()
                next_at = time.monotonic()
                continue
            self._idle.clear()
            try:
                previous = self.last_key
                self._send(self._edits())
                if self.read_after_write and previous is not None:
                    self._read(previous)
            except httpx.HTTPError as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                self.counts.refused += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        self._idle.set()

    def _edits(self) -> list[Document]:
        picked = self._random.sample(self.documents, min(self.batch, len(self.documents)))
        edits = []
        for document in picked:
            self._clock = max(self._clock + timedelta(microseconds=1), datetime.now(UTC))
            edit = dict(document)
            edit["title"] = f"{_base_title(document['title'])} (live edit {self.counts.batches + 1})"
            edit["updated_at"] = self._clock.isoformat(timespec="microseconds").replace("+00:00", "Z")
            edits.append(edit)
        return edits

    def _send(self, edits: list[Document]) -> None:
        body = b"".join(orjson.dumps(_payload(edit)) + b"\n" for edit in edits)
        answer = self._client.post("/tracks/batch", content=body)
        self.counts.batches += 1
        if answer.status_code != 202:
            self.counts.refused += 1
            return
        rejected = {line["line"] for line in answer.json().get("rejected", [])}
        self.counts.rejected += len(rejected)
        for number, edit in enumerate(edits, start=1):
            if number not in rejected:
                self.acknowledged[edit["_id"]] = edit["updated_at"]
                self.counts.accepted += 1
                self.last_key = edit["_id"]

    def _read(self, key: int) -> None:
        """GET a track as readers would; a version older than one a GET returned before is counted."""
        answer = self._client.get(f"/tracks/{key}")
        if answer.status_code != 200:
            return
        counts = self.counts
        counts.reads += 1
        store = answer.headers.get("X-Tuneflow-Read-Store", "?")
        counts.reads_by_store[store] = counts.reads_by_store.get(store, 0) + 1
        version = answer.json().get("updated_at")
        if not isinstance(version, str):
            return
        seen = self._seen.get(key)
        if seen is not None and _instant(version) < _instant(seen):
            counts.reads_back_in_time += 1
        elif seen is None or _instant(version) > _instant(seen):
            self._seen[key] = version


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _base_title(title: str) -> str:
    return title.split(" (live edit ", 1)[0]


def _payload(document: Document) -> Document:
    """A track upsert as the http source takes it: the document's business fields."""
    return {key: value for key, value in document.items() if key == "_id" or not key.startswith("_")}
