"""A writer that keeps changing the legacy catalog the way its users do, on PostgreSQL or MariaDB alike: tracks,
albums, artists and credits inserted, updated and deleted in small transactions, at a steady pace.

Every track keeps a MAIN artist (the catalog's rule): only credits of other roles are deleted, and only artists the
writer added itself (never credited as MAIN) are deleted, with their credits."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

WORDS = ("Luz", "Nacht", "Río", "Sky", "밤", "Ángel", "Echo", "Mañana", "Stern", "Ø", "Velvet", "夏")
ROLES = ("FEATURED", "COMPOSER", "LYRICIST", "ARRANGER")


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class CatalogWriter(threading.Thread):
    """Transactions of one to three changes, `per_second` of them, until `stop` is set (or `transactions` ran)."""

    def __init__(self, engine: Engine, per_second: float, seed: int, transactions: int | None = None) -> None:
        super().__init__(daemon=True, name="catalog-writer")
        self.engine, self.pause = engine, 1.0 / per_second
        self.rng = random.Random(seed)
        self.transactions = transactions
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.committed = 0
        self.counts: dict[str, int] = {}
        self.added_albums: list[int] = []
        self.added_artists: list[int] = []

    def run(self) -> None:
        try:
            with self.engine.connect() as conn:
                self.low, self.top = ({table: conn.execute(text(f"SELECT {f}({table}_id) FROM {table}")).scalar_one()
                                       for table in ("track", "album", "artist")} for f in ("min", "max"))
                self.original_artists = self.top["artist"]
                self.genres = list(conn.execute(text("SELECT genre_id FROM genre")).scalars())
            operations, weights = zip(*self.OPERATIONS, strict=True)
            next_at = time.monotonic()
            while not self.stop.is_set() and (self.transactions is None or self.committed < self.transactions):
                with self.engine.begin() as conn:
                    for _ in range(self.rng.randint(1, 3)):
                        operation: Callable[[CatalogWriter, Connection], None] = self.rng.choices(
                            operations, weights)[0]
                        operation(self, conn)
                        self.counts[operation.__name__] = self.counts.get(operation.__name__, 0) + 1
                self.committed += 1
                next_at += self.pause
                self.stop.wait(max(0.0, next_at - time.monotonic()))
        except BaseException as exc:
            self.error = exc

    # -- picking rows ------------------------------------------------------------------------------------------

    def pick(self, conn: Connection, table: str, high: int | None = None) -> int:
        """An existing row's id, about uniformly over the id space (an index seek, not a sort of the table)."""
        key, low = f"{table}_id", self.low[table]
        start = self.rng.randint(low, high or self.top[table])
        found = conn.execute(text(f"SELECT {key} FROM {table} WHERE {key} >= :start ORDER BY {key} LIMIT 1"),
                             {"start": start}).scalar()
        if found is None:
            found = conn.execute(text(f"SELECT {key} FROM {table} WHERE {key} >= :low ORDER BY {key} LIMIT 1"),
                                 {"low": low}).scalar_one()
        return int(found)

    def title(self) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(1, 3))) + f" {self.rng.randint(1, 999)}"

    # -- tracks --------------------------------------------------------------------------------------------------

    def retitle_track(self, conn: Connection) -> None:
        conn.execute(text("UPDATE track SET title = :title, updated_at = :at WHERE track_id = :id"),
                     {"title": self.title(), "at": now(), "id": self.pick(conn, "track")})

    def move_track(self, conn: Connection) -> None:
        conn.execute(text("UPDATE track SET album_id = :album, updated_at = :at WHERE track_id = :id"),
                     {"album": self.pick(conn, "album"), "at": now(), "id": self.pick(conn, "track")})

    def insert_track(self, conn: Connection) -> None:
        self.top["track"] += 1
        track_id = self.top["track"]
        conn.execute(text("INSERT INTO track (track_id, album_id, title, disc_no, track_no, duration_ms, explicit, "
                          "updated_at) VALUES (:id, :album, :title, 1, :no, :ms, :explicit, :at)"),
                     {"id": track_id, "album": self.pick(conn, "album"), "title": self.title(),
                      "no": self.rng.randint(1, 30), "ms": self.rng.randint(60_000, 400_000),
                      "explicit": self.rng.random() < 0.1, "at": now()})
        main = self.pick(conn, "artist", high=self.original_artists)
        conn.execute(text("INSERT INTO track_artist (track_id, artist_id, role, ord) VALUES (:t, :a, 'MAIN', 1)"),
                     {"t": track_id, "a": main})
        conn.execute(text("INSERT INTO track_genre (track_id, genre_id) VALUES (:t, :g)"),
                     {"t": track_id, "g": self.rng.choice(self.genres)})

    def delete_track(self, conn: Connection) -> None:
        track_id = self.pick(conn, "track")
        for table in ("track_artist", "track_genre", "track"):
            conn.execute(text(f"DELETE FROM {table} WHERE track_id = :id"), {"id": track_id})

    # -- credits -------------------------------------------------------------------------------------------------

    def add_credit(self, conn: Connection) -> None:
        track_id = self.pick(conn, "track")
        artist_id = self.pick(conn, "artist")
        role = self.rng.choice(ROLES)
        taken = conn.execute(text("SELECT count(*) FROM track_artist WHERE track_id = :t AND artist_id = :a AND "
                                  "role = :r"), {"t": track_id, "a": artist_id, "r": role}).scalar_one()
        if not taken:
            conn.execute(text("INSERT INTO track_artist (track_id, artist_id, role, ord) VALUES (:t, :a, :r, :o)"),
                         {"t": track_id, "a": artist_id, "r": role, "o": self.rng.randint(1, 9)})

    def drop_credit(self, conn: Connection) -> None:
        row = conn.execute(text("SELECT track_id, artist_id, role FROM track_artist WHERE track_id >= :start AND "
                                "role <> 'MAIN' ORDER BY track_id LIMIT 1"),
                           {"start": self.rng.randint(self.low["track"], self.top["track"])}).first()
        if row is not None:
            conn.execute(text("DELETE FROM track_artist WHERE track_id = :t AND artist_id = :a AND role = :r"),
                         {"t": row[0], "a": row[1], "r": row[2]})

    # -- albums --------------------------------------------------------------------------------------------------

    def retitle_album(self, conn: Connection) -> None:
        conn.execute(text("UPDATE album SET title = :title, updated_at = :at WHERE album_id = :id"),
                     {"title": self.title(), "at": now(), "id": self.pick(conn, "album")})

    def insert_album(self, conn: Connection) -> None:
        self.top["album"] += 1
        album_id = self.top["album"]
        conn.execute(text("INSERT INTO album (album_id, title, album_type, release_date, label, updated_at) "
                          "VALUES (:id, :title, :kind, :released, :label, :at)"),
                     {"id": album_id, "title": self.title(), "kind": self.rng.choice(("ALBUM", "EP", "SINGLE")),
                      "released": f"20{self.rng.randint(10, 25)}-0{self.rng.randint(1, 9)}-1{self.rng.randint(0, 9)}",
                      "label": self.rng.choice((None, "Live Label")), "at": now()})
        conn.execute(text("INSERT INTO album_artist (album_id, artist_id, ord) VALUES (:al, :ar, 1)"),
                     {"al": album_id, "ar": self.pick(conn, "artist")})
        self.added_albums.append(album_id)

    def delete_album(self, conn: Connection) -> None:
        """An album the writer added; its tracks move to another album first."""
        if not self.added_albums:
            return self.insert_album(conn)
        album_id = self.added_albums.pop(self.rng.randrange(len(self.added_albums)))
        other = album_id
        while other == album_id:
            other = self.pick(conn, "album")
        conn.execute(text("UPDATE track SET album_id = :other, updated_at = :at WHERE album_id = :id"),
                     {"other": other, "at": now(), "id": album_id})
        conn.execute(text("DELETE FROM album_artist WHERE album_id = :id"), {"id": album_id})
        conn.execute(text("DELETE FROM album WHERE album_id = :id"), {"id": album_id})
        return None

    # -- artists -------------------------------------------------------------------------------------------------

    def rename_artist(self, conn: Connection) -> None:
        conn.execute(text("UPDATE artist SET name = :name, updated_at = :at WHERE artist_id = :id"),
                     {"name": self.title(), "at": now(), "id": self.pick(conn, "artist")})

    def insert_artist(self, conn: Connection) -> None:
        self.top["artist"] += 1
        conn.execute(text("INSERT INTO artist (artist_id, name, country, debut_year, updated_at) "
                          "VALUES (:id, :name, :country, :year, :at)"),
                     {"id": self.top["artist"], "name": self.title(), "country": self.rng.choice((None, "KR", "ES")),
                      "year": self.rng.choice((None, 2001, 2019)), "at": now()})
        self.added_artists.append(self.top["artist"])

    def delete_artist(self, conn: Connection) -> None:
        """An artist the writer added (never a MAIN credit), with its credits."""
        if not self.added_artists:
            return self.insert_artist(conn)
        artist_id = self.added_artists.pop(self.rng.randrange(len(self.added_artists)))
        for table in ("track_artist", "album_artist", "artist"):
            conn.execute(text(f"DELETE FROM {table} WHERE artist_id = :id"), {"id": artist_id})
        return None

    OPERATIONS: tuple[tuple[Callable[[CatalogWriter, Connection], Any], int], ...] = (
        (retitle_track, 6), (move_track, 3), (insert_track, 4), (delete_track, 2),
        (add_credit, 4), (drop_credit, 3),
        (retitle_album, 2), (insert_album, 2), (delete_album, 1),
        (rename_artist, 2), (insert_artist, 2), (delete_artist, 1),
    )
