"""Pre-built track documents of realistic size (~600 bytes as JSON) for benchmarks."""

from __future__ import annotations

import random
from typing import Any

import orjson

_WORDS = ["Love", "wins", "all", "밤편지", "夜に駆ける", "Бессонница", "Corazón", "Night", "Drive", "Blueming",
          "Палитра", "春よ、来い", "Eight", "Celebrity", "Strawberry", "Moon", "Holssi", "Через", "Ámbar", "Lilac"]
_GENRES = ["Ballad", "K-Pop", "J-Pop", "Indie", "Rock", "Hip-Hop", "R&B", "Jazz", "Classical", "Trot"]
_ROLES = ["MAIN", "FEATURED", "COMPOSER", "LYRICIST", "ARRANGER"]


def track_document(track_id: int, rng: random.Random, version: int = 0) -> dict[str, Any]:
    album_id = track_id // 10 + 1
    artists = [{"artist_id": rng.randint(1, 50_000), "name": " ".join(rng.choices(_WORDS, k=2)), "role": "MAIN"}]
    artists += [
        {"artist_id": rng.randint(1, 50_000), "name": " ".join(rng.choices(_WORDS, k=2)), "role": role}
        for role in rng.sample(_ROLES[1:], k=3)
    ]
    return {
        "_id": track_id,
        "title": " ".join(rng.choices(_WORDS, k=rng.randint(2, 5))),
        "disc_no": 1,
        "track_no": track_id % 12 + 1,
        "duration_ms": rng.randint(90_000, 420_000),
        "isrc": f"KRA30{track_id % 100:02d}{track_id % 10_000_000:07d}"[:12],
        "explicit": rng.random() < 0.1,
        "album": {"album_id": album_id, "title": " ".join(rng.choices(_WORDS, k=3)), "album_type": "ALBUM",
                  "release_date": f"20{rng.randint(10, 24)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
                  "label": "EDAM Entertainment"},
        "artists": artists,
        "genres": sorted(rng.sample(_GENRES, k=2)),
        "updated_at": f"2024-02-20T09:00:{version % 60:02d}Z",
    }


def track_documents(count: int, seed: int = 7, start: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [track_document(i, rng) for i in range(start, start + count)]


def encoded_size(documents: list[dict[str, Any]]) -> float:
    return sum(len(orjson.dumps(d)) for d in documents[:1000]) / min(len(documents), 1000)
