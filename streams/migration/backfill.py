"""Backfill: every legacy track, assembled into its document, written with version-guarded upserts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from streams.catalog.assemble import assemble_tracks, track_id_batches
from streams.catalog.models import timestamp_version
from streams.serde import to_plain
from streams.stores.base import Change, DocumentStore


@dataclass
class BackfillReport:
    read: int = 0
    written: int = 0
    stale: int = 0
    rejected: dict[int, str] = field(default_factory=dict)


def backfill_tracks(
    engine: Engine,
    store: DocumentStore,
    collection: str = "tracks",
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> BackfillReport:
    report = BackfillReport()
    with engine.connect() as conn:
        for ids in track_id_batches(conn, batch_size):
            documents, rejected = assemble_tracks(conn, ids)
            changes = [
                Change(key=doc.id, version=timestamp_version(doc.updated_at), document=to_plain(doc))
                for doc in documents
            ]
            result = store.apply(collection, changes)
            report.read += len(ids)
            report.written += result.applied
            report.stale += result.stale
            for track_id, error in rejected:
                report.rejected[track_id] = "; ".join(
                    f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors()
                )
            if progress is not None:
                progress(len(ids))
    return report
