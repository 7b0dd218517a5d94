"""Verification: the document store holds exactly what the legacy tables say, document by document."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from streams.catalog.assemble import assemble_tracks, track_id_batches
from streams.serde import business_fields, canonical_json, to_plain
from streams.stores.base import DocumentStore


@dataclass
class VerifyReport:
    source_rows: int = 0
    store_documents: int = 0
    missing: list[int] = field(default_factory=list)
    different: list[int] = field(default_factory=list)
    extra: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.different or self.extra)


def verify_tracks(
    engine: Engine,
    store: DocumentStore,
    collection: str = "tracks",
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    report = VerifyReport()
    with engine.connect() as conn:
        for ids in track_id_batches(conn, batch_size):
            expected, _rejected = assemble_tracks(conn, ids)
            stored = store.get_many(collection, [doc.id for doc in expected])
            report.source_rows += len(expected)
            for doc in expected:
                found = stored.get(doc.id)
                if found is None:
                    report.missing.append(doc.id)
                elif canonical_json(business_fields(found)) != canonical_json(business_fields(to_plain(doc))):
                    report.different.append(doc.id)
            if progress is not None:
                progress(len(ids))
    report.store_documents = store.count(collection)
    report.extra = report.store_documents - (report.source_rows - len(report.missing))
    return report
