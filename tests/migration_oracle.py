"""What the template path must agree with: the hand-written `assemble` path, document for document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pymongo import MongoClient
from sqlalchemy import Engine, text

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


def tamper_catalog(client: MongoClient[dict[str, Any]], database: str, engine: Engine) -> dict[str, list[Any]]:
    """Change the target and the source of a migrated catalog; the keys verify must name, by kind.

    Target: a nested field of one track, one track deleted, one added, the order of one track's artists reversed
    (their order matters). Source: one track's title updated. Keys are picked relative to the catalog's size.
    """
    tracks = client[database]["tracks"]
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM track")).scalar_one()
    assert count >= 50, "tamper_catalog needs a catalog of at least 50 tracks"
    nested, deleted, updated = count // 7, count // 3, count // 2
    # Lookups by `_id` only: FerretDB serves them from an index but scans the collection for any other filter.
    several = next(found for key in range((2 * count) // 3, count + 1)
                   if (found := tracks.find_one({"_id": key})) is not None and len(found.get("artists", [])) > 1)
    extra = 10 * count + 1_000_000
    tracks.update_one({"_id": nested}, {"$set": {"album.label": "Tampered"}})
    tracks.delete_one({"_id": deleted})
    tracks.insert_one({"_id": extra, "title": "not in the source", "_version": 1, "_deleted": False})
    tracks.update_one({"_id": several["_id"]}, {"$set": {"artists": several["artists"][::-1]}})
    with engine.begin() as conn:
        conn.execute(text("UPDATE track SET title = 'Changed at the source' WHERE track_id = :id"), {"id": updated})
    return {"missing": [deleted], "extra": [extra], "different": sorted([nested, updated, several["_id"]]),
            "nested": [nested], "updated": [updated], "reordered": [several["_id"]]}
