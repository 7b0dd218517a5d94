"""HTTP load for a migration under test: a paced writer that keeps a ledger of every acknowledged track version, and
a reader that polls `GET /tracks/{id}` and remembers what each answer held and when.

Writes keep each track's album, artists and genres as the catalog has them (only the track's own fields change), so
the RDBMS and the document store can agree document for document; each write carries a newer `updated_at` (its
version) than any write before it.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

Document = dict[str, Any]


def version_of(document: Document) -> datetime:
    return datetime.fromisoformat(document["updated_at"])


@dataclass
class Ledger:
    """The newest acknowledged version of every track written, with its document."""

    latest: dict[int, Document] = field(default_factory=dict)
    acknowledged: int = 0
    refused: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, documents: Sequence[Document]) -> None:
        with self._lock:
            self.acknowledged += len(documents)
            for document in documents:
                held = self.latest.get(document["_id"])
                if held is None or version_of(held) < version_of(document):
                    self.latest[document["_id"]] = document

    def snapshot(self) -> dict[int, Document]:
        with self._lock:
            return dict(self.latest)

    def keys(self) -> list[int]:
        with self._lock:
            return list(self.latest)


class TrackWriter:
    """NDJSON batches of `batch` tracks, paced to `rate` tracks/s: updates of catalog tracks (a hot few most
    often) and new tracks made after catalog ones. A 202 puts every line in the ledger."""

    def __init__(self, url: str, catalog: Sequence[Document], hot: int, rate: float, batch: int = 25,
                 seed: int = 15) -> None:
        self.url, self.rate, self.batch = url, rate, batch
        self.catalog = list(catalog)
        self.hot = self.catalog[:hot]
        self.ledger = Ledger()
        self._random = random.Random(seed)
        self._base = datetime.now(UTC).replace(microsecond=0, tzinfo=None) + timedelta(seconds=1)
        self._sequence = 0
        self._next_id = max(d["_id"] for d in catalog) + 1
        self._created: list[Document] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="track-writer", daemon=True)
        self.error: BaseException | None = None
        self.sent_s = 0.0

    def start(self) -> TrackWriter:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        if self.error is not None:
            raise AssertionError(f"the writer failed: {self.error!r}")

    def _run(self) -> None:
        started = time.monotonic()
        period = self.batch / self.rate
        sent = 0
        try:
            with httpx.Client(timeout=60) as client:
                while not self._stop.is_set():
                    due = started + sent * period
                    wait = due - time.monotonic()
                    if wait > 0:
                        self._stop.wait(wait)
                        continue
                    self._send(client, [self._next() for _ in range(self.batch)])
                    sent += 1
        except BaseException as exc:  # the test reports it
            self.error = exc
        self.sent_s = time.monotonic() - started

    def _send(self, client: httpx.Client, documents: list[Document]) -> None:
        body = b"\n".join(orjson.dumps(d) for d in documents)
        for _ in range(30):
            answer = client.post(f"{self.url}/tracks/batch", content=body,
                                 headers={"Content-Type": "application/x-ndjson"})
            if answer.status_code == 503:  # nothing or some written: sending again is safe
                time.sleep(0.2)
                continue
            reply = answer.json()
            if answer.status_code != 202 or reply["rejected"]:
                self.ledger.refused.append(f"{answer.status_code}: {answer.text[:500]}")
            if answer.status_code == 202:
                rejected = {line["line"] for line in reply["rejected"]}
                self.ledger.add([d for number, d in enumerate(documents, 1) if number not in rejected])
            return
        raise AssertionError("the http source answered 503 for 6 s")

    def _next(self) -> Document:
        self._sequence += 1
        stamp = (self._base + timedelta(microseconds=self._sequence)).isoformat() + "Z"
        draw = self._random.random()
        if draw < 0.2 or (draw < 0.3 and not self._created):
            base = self._random.choice(self.catalog)
            document = {**base, "_id": self._next_id, "isrc": f"ZZFLP{self._next_id % 10_000_000:07d}",
                        "title": f"New {self._next_id}"}
            self._next_id += 1
            self._created.append(document)
        elif draw < 0.3:
            document = dict(self._random.choice(self._created))
        elif draw < 0.8:
            document = dict(self._random.choice(self.hot))
        else:
            document = dict(self._random.choice(self.catalog))
        document["title"] = f"{document['title'].split(' · ', 1)[0]} · {self._sequence}"
        document["duration_ms"] = 120_000 + self._sequence % 100_000
        document["updated_at"] = stamp
        return document


@dataclass(frozen=True, slots=True)
class Read:
    key: int
    started: float
    ended: float
    version: datetime | None  # None: 404
    store: str


class TrackReader:
    """Polls `GET /tracks/{id}` of tracks the ledger holds (the writer's hot tracks most often) until stopped."""

    def __init__(self, url: str, ledger: Ledger, hot: Sequence[int], seed: int = 16) -> None:
        self.url, self.ledger, self.hot = url, ledger, list(hot)
        self.reads: list[Read] = []
        self.failures: list[str] = []
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="track-reader", daemon=True)

    def start(self) -> TrackReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                keys = self.ledger.keys()
                if not keys:
                    self._stop.wait(0.05)
                    continue
                key = self._random.choice(self.hot if self._random.random() < 0.7 else keys)
                self.read(client, key)

    def read_once(self, key: int) -> Read | None:
        with httpx.Client(timeout=30) as client:
            return self.read(client, key)

    def read(self, client: httpx.Client, key: int) -> Read | None:
        started = time.monotonic()
        try:
            answer = client.get(f"{self.url}/tracks/{key}")
        except httpx.HTTPError as exc:
            self.failures.append(f"GET {key}: {exc!r}")
            return None
        ended = time.monotonic()
        if answer.status_code not in (200, 404):
            self.failures.append(f"GET {key}: {answer.status_code} {answer.text[:300]}")
            return None
        version = version_of(answer.json()) if answer.status_code == 200 else None
        read = Read(key, started, ended, version, answer.headers.get("X-Tuneflow-Read-Store", "?"))
        self.reads.append(read)
        return read


def stale_reads(reads: Sequence[Read]) -> list[str]:
    """Every read that returned an older version (or none) of a track than a read that had ended before it began:
    once a version was seen, it was applied, and no later read may go back."""
    by_key: dict[int, list[Read]] = defaultdict(list)
    for read in reads:
        by_key[read.key].append(read)
    floor = datetime.min.replace(tzinfo=UTC)
    found = []
    for key, seen in by_key.items():
        ended = sorted(seen, key=lambda r: r.ended)
        ends = [r.ended for r in ended]
        best: list[tuple[datetime, Read | None]] = []  # the newest version among reads ended so far
        for r in ended:
            previous = best[-1] if best else (floor, None)
            mine = r.version or floor
            best.append((mine, r) if mine > previous[0] else previous)
        for r in seen:
            before = bisect.bisect_left(ends, r.started)
            if before == 0:
                continue
            newest, witness = best[before - 1]
            if (r.version or floor) < newest:
                assert witness is not None
                found.append(f"track {key}: read {r.version} from {r.store} at {r.started:.3f} after reading "
                             f"{newest} from {witness.store} at {witness.ended:.3f}")
    return found
