"""Track payloads for unit tests, valid as CATALOG.md describes them."""

from __future__ import annotations

from typing import Any


def track_payload(track_id: int = 1000123, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "_id": track_id,
        "title": "Love wins all",
        "disc_no": 1,
        "track_no": 1,
        "duration_ms": 271000,
        "isrc": "KRA302400001",
        "explicit": False,
        "album": {"album_id": 5001, "title": "The Winning", "album_type": "EP",
                  "release_date": "2024-02-20", "label": "EDAM"},
        "artists": [{"artist_id": 77, "name": "IU", "role": "MAIN"},
                    {"artist_id": 91, "name": "Seo Dong-hwan", "role": "COMPOSER"}],
        "genres": ["Ballad", "K-Pop"],
        "updated_at": "2024-02-20T09:00:00Z",
    }
    payload.update(overrides)
    return payload
