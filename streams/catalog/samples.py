"""Sample ingestion payloads — valid tracks, and invalid ones of every kind `normalize` must catch."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from streams.catalog.models import TrackDocument
from streams.serde import to_plain

_TITLE_WORDS = ["Love", "wins", "all", "밤편지", "夜に駆ける", "Бессонница", "Corazón", "Night", "Drive", "Blueming",
                "Палитра", "春よ、来い", "Eight", "Celebrity", "Strawberry", "Moon", "홀씨", "Через", "Ámbar", "Lilac"]
_NAMES = ["IU", "아이유", "YOASOBI", "宇多田ヒカル", "Земфира", "Rosalía", "Seo Dong-hwan", "BTS", "周杰倫",
          "Fairuz فيروز", "Björk", "Nujabes", "Ado", "Stromae", "Mitski"]
_GENRES = ["Ballad", "K-Pop", "J-Pop", "Indie", "Rock", "Hip-Hop", "R&B", "Jazz", "Classical", "Trot", "Mandopop"]
_SECONDARY_ROLES = ["FEATURED", "COMPOSER", "LYRICIST", "ARRANGER"]
_BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)


def track(track_id: int, rng: random.Random, version: int = 0) -> dict[str, Any]:
    """A valid track upsert; `version` moves `updated_at` forward by that many seconds."""
    artists = [{"artist_id": rng.randint(1, 5000), "name": rng.choice(_NAMES), "role": "MAIN"}]
    artists += [{"artist_id": rng.randint(1, 5000), "name": rng.choice(_NAMES), "role": role}
                for role in rng.sample(_SECONDARY_ROLES, k=rng.randint(0, 3))]
    album_id = track_id // 10 + 1
    return {
        "_id": track_id,
        "title": " ".join(rng.choices(_TITLE_WORDS, k=rng.randint(1, 4))),
        "disc_no": 1 + (track_id % 20 == 0),
        "track_no": track_id % 12 + 1,
        "duration_ms": rng.choice([None, rng.randint(60_000, 600_000)]),
        "isrc": rng.choice([None, f"KR{rng.choice('ABCDEFGH')}{rng.randint(10, 99)}{rng.randint(0, 9_999_999):07d}"]),
        "explicit": rng.random() < 0.1,
        "album": {"album_id": album_id, "title": " ".join(rng.choices(_TITLE_WORDS, k=2)),
                  "album_type": rng.choice(["ALBUM", "SINGLE", "EP", "COMPILATION"]),
                  "release_date": rng.choice([None, f"20{rng.randint(10, 24)}-{rng.randint(1, 12):02d}-"
                                                    f"{rng.randint(1, 28):02d}"]),
                  "label": rng.choice([None, "EDAM", "Sony Music Japan", "Kakao"])},
        "artists": artists,
        "genres": rng.sample(_GENRES, k=rng.randint(0, 3)),
        "updated_at": (_BASE_TIME + timedelta(seconds=track_id + version)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def apply(doc: dict[str, Any]) -> Any:
        *parents, leaf = path.split(".")
        target = doc
        for part in parents:
            target = target[part]
        target[leaf] = value
        return doc
    return apply


# Each defect makes a payload invalid in one specific way (the expected DLQ reason's field).
DEFECTS: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "empty-title": ("title", _set("title", "   ")),
    "bad-isrc": ("isrc", _set("isrc", "KR-12")),
    "zero-duration": ("duration_ms", _set("duration_ms", 0)),
    "huge-duration": ("duration_ms", _set("duration_ms", 90_000_000)),
    "track-no-zero": ("track_no", _set("track_no", 0)),
    "bad-album-type": ("album.album_type", _set("album.album_type", "LP")),
    "bad-date": ("album.release_date", _set("album.release_date", "2023-02-30")),
    "no-main-artist": ("artists", _set("artists", [{"artist_id": 1, "name": "X", "role": "COMPOSER"}])),
    "bad-role": ("artists.0.role", _set("artists", [{"artist_id": 1, "name": "X", "role": "DJ"}])),
    "unknown-field": ("popularity", _set("popularity", 99)),
    "missing-updated-at": ("updated_at", lambda doc: {k: v for k, v in doc.items() if k != "updated_at"}),
    "malformed-json": ("", lambda doc: "not json"),
}


@dataclass(frozen=True)
class Sample:
    key: bytes
    value: bytes
    valid: bool
    defect: str | None = None
    expected_field: str | None = None


def samples(count: int, invalid_ratio: float = 0.05, seed: int = 42, first_id: int = 1) -> list[Sample]:
    """`count` payloads; every (1/invalid_ratio)-th one broken, cycling through DEFECTS."""
    rng = random.Random(seed)
    every = round(1 / invalid_ratio) if invalid_ratio > 0 else 0
    names = sorted(DEFECTS)
    out: list[Sample] = []
    for index in range(count):
        track_id = first_id + index
        doc = track(track_id, rng)
        key = str(track_id).encode()
        if every and index % every == every - 1:
            name = names[(index // every) % len(names)]
            field, breaker = DEFECTS[name]
            broken = breaker(doc)
            value = b'{"_id": ' + key + b', "title": "cut off' if broken == "not json" else orjson.dumps(broken)
            out.append(Sample(key, value, valid=False, defect=name, expected_field=field))
        else:
            out.append(Sample(key, orjson.dumps(doc), valid=True))
    return out


def expected_documents(items: Sequence[Sample]) -> dict[int, dict[str, Any]]:
    """What the store must hold: the newest valid version of each track, normalized."""
    docs: dict[int, dict[str, Any]] = {}
    for sample in items:
        if sample.valid:
            doc = to_plain(TrackDocument.model_validate_json(sample.value))
            current = docs.get(doc["_id"])
            if current is None or doc["updated_at"] > current["updated_at"]:
                docs[doc["_id"]] = doc
    return docs
