"""The legacy relational catalog (CATALOG.md) as SQLAlchemy Core tables: PostgreSQL, MariaDB, SQLite."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    false,
    text,
)
from sqlalchemy.dialects import mysql

metadata = MetaData()

# Explicit ids come from the legacy system, so no SERIAL / AUTO_INCREMENT; on SQLite an INTEGER
# primary key aliases the rowid, which makes bulk loads noticeably faster.
_Id = BigInteger().with_variant(Integer(), "sqlite")
_Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
_LINK: dict[str, Any] = {**_MYSQL, "sqlite_with_rowid": False}

artist = Table(
    "artist",
    metadata,
    Column("artist_id", _Id, primary_key=True, autoincrement=False),
    Column("name", String(500), nullable=False),
    Column("country", CHAR(2)),
    Column("debut_year", SmallInteger),
    Column("updated_at", _Timestamp, nullable=False),
    **_MYSQL,
)

album = Table(
    "album",
    metadata,
    Column("album_id", _Id, primary_key=True, autoincrement=False),
    Column("title", String(500), nullable=False),
    Column("album_type", String(20), nullable=False),
    Column("release_date", Date),
    Column("label", String(200)),
    Column("updated_at", _Timestamp, nullable=False),
    **_MYSQL,
)

album_artist = Table(
    "album_artist",
    metadata,
    Column("album_id", BigInteger, ForeignKey("album.album_id"), primary_key=True, autoincrement=False),
    Column("artist_id", BigInteger, ForeignKey("artist.artist_id"), primary_key=True, autoincrement=False),
    Column("ord", SmallInteger, nullable=False),
    **_LINK,
)

track = Table(
    "track",
    metadata,
    Column("track_id", _Id, primary_key=True, autoincrement=False),
    Column("album_id", BigInteger, ForeignKey("album.album_id"), nullable=False),
    Column("title", String(500), nullable=False),
    Column("disc_no", SmallInteger, nullable=False, default=1, server_default=text("1")),
    Column("track_no", SmallInteger, nullable=False),
    Column("duration_ms", Integer),
    Column("isrc", CHAR(12), unique=True),
    Column("explicit", Boolean, nullable=False, default=False, server_default=false()),
    Column("updated_at", _Timestamp, nullable=False),
    **_MYSQL,
)

track_artist = Table(
    "track_artist",
    metadata,
    Column("track_id", BigInteger, ForeignKey("track.track_id"), primary_key=True, autoincrement=False),
    Column("artist_id", BigInteger, ForeignKey("artist.artist_id"), primary_key=True, autoincrement=False),
    Column("role", String(20), primary_key=True),
    Column("ord", SmallInteger, nullable=False),
    **_LINK,
)

genre = Table(
    "genre",
    metadata,
    Column("genre_id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(100), nullable=False, unique=True),
    **_MYSQL,
)

track_genre = Table(
    "track_genre",
    metadata,
    Column("track_id", BigInteger, ForeignKey("track.track_id"), primary_key=True, autoincrement=False),
    Column("genre_id", Integer, ForeignKey("genre.genre_id"), primary_key=True, autoincrement=False),
    **_LINK,
)


def create_legacy_schema(engine: Engine) -> None:
    """Create the seven legacy tables that do not exist yet (parents before children)."""
    metadata.create_all(engine, checkfirst=True)


def drop_legacy_schema(engine: Engine) -> None:
    """Drop the legacy tables that exist (children before parents), with their rows."""
    metadata.drop_all(engine, checkfirst=True)
