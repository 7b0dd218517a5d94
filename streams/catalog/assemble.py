"""Builds `tracks` documents from the legacy tables, a batch of keys at a time (four queries per batch)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, select

from streams.catalog import legacy
from streams.catalog.models import TrackDocument


def track_id_batches(conn: Connection, batch_size: int, after: int = 0) -> Iterator[list[int]]:
    """Every track id after `after` in key order, in batches, by keyset pagination (no OFFSET scans)."""
    while ids := next_track_ids(conn, after, batch_size):
        yield ids
        after = ids[-1]


def next_track_ids(conn: Connection, after: int, limit: int) -> list[int]:
    track = legacy.metadata.tables["track"]
    return list(conn.execute(
        select(track.c.track_id).where(track.c.track_id > after).order_by(track.c.track_id).limit(limit)).scalars())


def track_payloads(conn: Connection, track_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The raw track documents (not yet validated) for the given ids; missing ids are absent."""
    tables = legacy.metadata.tables
    track, album = tables["track"], tables["album"]
    track_artist, artist = tables["track_artist"], tables["artist"]
    track_genre, genre = tables["track_genre"], tables["genre"]

    credits: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in conn.execute(
        select(track_artist.c.track_id, track_artist.c.artist_id, artist.c.name, track_artist.c.role)
        .join(artist, artist.c.artist_id == track_artist.c.artist_id)
        .where(track_artist.c.track_id.in_(track_ids))
        .order_by(track_artist.c.track_id, track_artist.c.ord, track_artist.c.artist_id)
    ):
        credits[row.track_id].append({"artist_id": row.artist_id, "name": row.name, "role": row.role})

    genres: dict[int, list[str]] = defaultdict(list)
    for row in conn.execute(
        select(track_genre.c.track_id, genre.c.name)
        .join(genre, genre.c.genre_id == track_genre.c.genre_id)
        .where(track_genre.c.track_id.in_(track_ids))
    ):
        genres[row.track_id].append(row.name)

    payloads = []
    for row in conn.execute(
        select(track, album.c.title.label("album_title"), album.c.album_type, album.c.release_date, album.c.label)
        .join(album, album.c.album_id == track.c.album_id)
        .where(track.c.track_id.in_(track_ids))
        .order_by(track.c.track_id)
    ):
        payloads.append(
            {
                "_id": row.track_id,
                "title": row.title,
                "disc_no": row.disc_no,
                "track_no": row.track_no,
                "duration_ms": row.duration_ms,
                "isrc": row.isrc,
                "explicit": bool(row.explicit),
                "album": {
                    "album_id": row.album_id,
                    "title": row.album_title,
                    "album_type": row.album_type,
                    "release_date": row.release_date,
                    "label": row.label,
                },
                "artists": credits.get(row.track_id, []),
                "genres": genres.get(row.track_id, []),
                "updated_at": row.updated_at,
            }
        )
    return payloads


def assemble_tracks(
    conn: Connection, track_ids: Sequence[int]
) -> tuple[list[TrackDocument], list[tuple[int, ValidationError]]]:
    """Valid documents, and the ids whose legacy rows break the catalog rules with the reasons."""
    documents: list[TrackDocument] = []
    rejected: list[tuple[int, ValidationError]] = []
    for payload in track_payloads(conn, track_ids):
        try:
            documents.append(TrackDocument.model_validate(payload))
        except ValidationError as exc:
            rejected.append((payload["_id"], exc))
    return documents, rejected
