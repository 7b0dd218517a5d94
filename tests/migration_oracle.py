"""What the template path must agree with: the hand-written `assemble` path, document for document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from streams.catalog.assemble import assemble_tracks, track_id_batches
from streams.serde import business_fields, canonical_json, to_plain

CATALOG_TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "templates" / "catalog.yaml"


def assembled_tracks(engine: Engine, batch_size: int = 2000) -> dict[Any, bytes]:
    """Canonical business content of every track `assemble.py` builds, by key."""
    found: dict[Any, bytes] = {}
    with engine.connect() as conn:
        for ids in track_id_batches(conn, batch_size):
            documents, rejected = assemble_tracks(conn, ids)
            assert not rejected
            for document in documents:
                found[document.id] = canonical_json(business_fields(to_plain(document)))
    return found
