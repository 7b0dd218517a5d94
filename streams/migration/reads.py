"""Reads that follow a migration's switch: a document by key from the store the switch reads now.

In the shadow phase (`dual-rdbms-primary`) a sample of reads also reads the other store and compares the business
content, counting matches and mismatches, so the consistency rate is visible before reads move.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter

from streams.migration.phases import PhaseView, StoreRole, routing
from streams.migration.source import load_bound, source_errors
from streams.migration.template_reader import KeyRange
from streams.runtime.metrics import LABELS
from streams.serde import business_fields, canonical_json
from streams.stores.factory import open_store

Document = dict[str, Any]


class DocumentReader(Protocol):
    def get(self, key: Any) -> Document | None:
        """The visible document of `key` (bookkeeping fields included), None if there is none."""
        ...

    def close(self) -> None: ...


class StoreReader:
    """Documents from a document store (MongoDB, FerretDB, the embedded store)."""

    def __init__(self, uri: str, database: str, collection: str) -> None:
        self._store = open_store(uri, database)
        self._collection = collection

    def get(self, key: Any) -> Document | None:
        return self._store.get_many(self._collection, [key]).get(key)

    def close(self) -> None:
        self._store.close()


class RelationalReader:
    """Documents read from the RDBMS through the migration's template: what `migrate` would write for the key."""

    def __init__(self, url: str, template: str, collection: str) -> None:
        self._url = url
        self._engine, bound = load_bound(template, url, [collection])
        self._reader = bound.readers[collection]
        self._lock = threading.Lock()  # one connection's worth of reads at a time per reader

    def get(self, key: Any) -> Document | None:
        with self._lock, source_errors(self._url), self._engine.connect() as conn:
            for found in self._reader.read(conn, KeyRange(keys=(key,))):
                return found.document
        return None

    def close(self) -> None:
        self._engine.dispose()


_families: dict[int, tuple[Counter, Counter]] = {}


def _families_of(registry: CollectorRegistry) -> tuple[Counter, Counter]:
    if id(registry) not in _families:
        _families[id(registry)] = (
            Counter("tuneflow_reads_total", "Documents read by key, by the store the switch read them from",
                    (*LABELS, "store"), registry=registry),
            Counter("tuneflow_shadow_reads_total", "Sampled reads of the other store compared with the answer, by "
                    "result (match, mismatch)", (*LABELS, "result"), registry=registry),
        )
    return _families[id(registry)]


@dataclass(frozen=True, slots=True)
class Read:
    document: Document | None
    store: StoreRole
    compared: bool | None  # None: not sampled; else whether the other store agreed


class SwitchedReads:
    """Reads by key from the store the switch reads now; in the shadow phase a sample is compared with the other."""

    def __init__(self, view: PhaseView, readers: dict[StoreRole, DocumentReader], sample: float,
                 registry: CollectorRegistry, labels: tuple[str, str, str],
                 chance: Callable[[], float] = random.random) -> None:
        missing = [role.value for role in StoreRole if role not in readers]
        if missing:
            raise ValueError(f"no reader for the {', '.join(missing)} store")
        self._view, self._readers, self._sample, self._chance = view, readers, sample, chance
        reads, shadow = _families_of(registry)
        self._reads = {role: reads.labels(*labels, role.value) for role in StoreRole}
        self._shadow = {result: shadow.labels(*labels, result) for result in ("match", "mismatch")}

    def get(self, key: Any) -> Read:
        state = self._view.current()
        store = state.reads
        document = self._readers[store].get(key)
        self._reads[store].inc()
        compared = None
        if routing(state.phase).compare_reads and self._sample > 0 and self._chance() < self._sample:
            other = StoreRole.MONGO if store is StoreRole.RDBMS else StoreRole.RDBMS
            compared = same_content(document, self._readers[other].get(key))
            self._shadow["match" if compared else "mismatch"].inc()
        return Read(document, store, compared)

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()


def same_content(a: Document | None, b: Document | None) -> bool:
    """Both absent, or both present with equal business content (bookkeeping fields, `_`-prefixed, ignored)."""
    if a is None or b is None:
        return a is None and b is None
    return canonical_json(business_fields(a)) == canonical_json(business_fields(b))
