"""The synthetic legacy catalog in SQLite: sizes, determinism, modes, integrity, realism, a clean backfill."""

from __future__ import annotations

import sys
import unicodedata
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Connection, Engine, select, text

from streams.catalog import legacy
from streams.catalog.dburl import make_engine, mask_password, to_sqlalchemy_url
from streams.catalog.generator import TABLE_ORDER, GenerationReport, generate_catalog
from streams.catalog.models import ISRC_PATTERN, MAX_DURATION_MS, clean_text
from streams.cli import main
from streams.errors import ConfigError
from streams.migration.backfill import backfill_tracks
from streams.migration.verify import verify_tracks
from streams.stores.embedded import EmbeddedStore

TRACKS = 3000

# (child table, child column, parent table, parent column): every foreign key CATALOG.md declares.
FOREIGN_KEYS = [
    ("album_artist", "album_id", "album", "album_id"),
    ("album_artist", "artist_id", "artist", "artist_id"),
    ("track", "album_id", "album", "album_id"),
    ("track_artist", "track_id", "track", "track_id"),
    ("track_artist", "artist_id", "artist", "artist_id"),
    ("track_genre", "track_id", "track", "track_id"),
    ("track_genre", "genre_id", "genre", "genre_id"),
]

SCRIPTS = {
    "Latin with accents": lambda ch: not ch.isascii() and "LATIN" in unicodedata.name(ch, ""),
    "Hangul": lambda ch: "\uac00" <= ch <= "\ud7a3",
    "Japanese kana": lambda ch: "\u3040" <= ch <= "\u30ff",
    "CJK ideographs": lambda ch: "\u4e00" <= ch <= "\u9fff",
    "Cyrillic": lambda ch: "\u0400" <= ch <= "\u04ff",
    "Greek": lambda ch: "\u0370" <= ch <= "\u03ff",
    "Arabic": lambda ch: "\u0600" <= ch <= "\u06ff",
}


def integrity_problems(conn: Connection) -> dict[str, int]:
    """Every count here is zero in a catalog that keeps CATALOG.md's referential and uniqueness rules."""
    problems = {
        f"{child}.{column} -> {parent}": conn.execute(text(
            f"SELECT count(*) FROM {child} c LEFT JOIN {parent} p ON p.{key} = c.{column} "
            f"WHERE p.{key} IS NULL"
        )).scalar_one()
        for child, column, parent, key in FOREIGN_KEYS
    }
    problems["tracks without a MAIN artist"] = conn.execute(text(
        "SELECT count(*) FROM track t WHERE NOT EXISTS "
        "(SELECT 1 FROM track_artist ta WHERE ta.track_id = t.track_id AND ta.role = 'MAIN')"
    )).scalar_one()
    problems["duplicate ISRCs"] = conn.execute(text(
        "SELECT count(isrc) - count(DISTINCT isrc) FROM track"
    )).scalar_one()
    problems["albums without tracks"] = conn.execute(text(
        "SELECT count(*) FROM album a WHERE NOT EXISTS (SELECT 1 FROM track t WHERE t.album_id = a.album_id)"
    )).scalar_one()
    return problems


def catalog_features(conn: Connection) -> dict[str, int]:
    """What makes the catalog realistic: every count is positive in a catalog of a few thousand tracks."""
    queries = {
        "multi-disc albums": "SELECT count(DISTINCT album_id) FROM track WHERE disc_no > 1",
        "compilations by various artists": (
            "SELECT count(*) FROM (SELECT t.album_id FROM track t JOIN album a ON a.album_id = t.album_id "
            "JOIN track_artist ta ON ta.track_id = t.track_id AND ta.role = 'MAIN' "
            "WHERE a.album_type = 'COMPILATION' "
            "GROUP BY t.album_id HAVING count(DISTINCT ta.artist_id) > 1) x"
        ),
        "singles": "SELECT count(*) FROM album WHERE album_type = 'SINGLE'",
        "EPs": "SELECT count(*) FROM album WHERE album_type = 'EP'",
        "featured credits": "SELECT count(*) FROM track_artist WHERE role = 'FEATURED'",
        "composer credits": "SELECT count(*) FROM track_artist WHERE role = 'COMPOSER'",
        "lyricist credits": "SELECT count(*) FROM track_artist WHERE role = 'LYRICIST'",
        "arranger credits": "SELECT count(*) FROM track_artist WHERE role = 'ARRANGER'",
        "tracks without genres": "SELECT count(*) FROM track t WHERE NOT EXISTS "
                                 "(SELECT 1 FROM track_genre g WHERE g.track_id = t.track_id)",
        "tracks with 3 genres": "SELECT count(*) FROM (SELECT track_id FROM track_genre GROUP BY track_id "
                                "HAVING count(*) = 3) x",
        "explicit tracks": "SELECT count(*) FROM track WHERE explicit",
    }
    for table, column in [("artist", "country"), ("artist", "debut_year"), ("album", "release_date"),
                          ("album", "label"), ("track", "duration_ms"), ("track", "isrc")]:
        queries[f"NULL {table}.{column}"] = f"SELECT count(*) FROM {table} WHERE {column} IS NULL"
    return {name: conn.execute(text(sql)).scalar_one() for name, sql in queries.items()}


def scripts_present(texts: list[str]) -> set[str]:
    return {name for name, belongs in SCRIPTS.items() if any(belongs(ch) for value in texts for ch in value)}


def table_contents(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {
            name: [tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key.columns))]
            for name, table in legacy.metadata.tables.items()
        }


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, GenerationReport]:
    url = f"sqlite:///{tmp_path_factory.mktemp('catalog') / 'legacy.sqlite'}"
    return url, generate_catalog(url, TRACKS)


@pytest.fixture(scope="module")
def engine(catalog: tuple[str, GenerationReport]) -> Engine:
    return make_engine(catalog[0])


def test_counts_are_reported_per_table_in_order_and_match_the_rows(
    catalog: tuple[str, GenerationReport], engine: Engine
) -> None:
    _, report = catalog
    assert tuple(report.counts) == TABLE_ORDER
    with engine.connect() as conn:
        stored = {name: conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
                  for name in TABLE_ORDER}
    assert report.counts == stored
    assert report.counts["track"] == TRACKS
    assert report.counts["genre"] == 30
    assert report.counts["artist"] == TRACKS // 8
    assert 7 <= TRACKS / report.counts["album"] <= 13
    assert report.counts["track_artist"] > TRACKS and report.counts["track_genre"] > TRACKS // 2
    assert report.seconds > 0 and report.tracks_per_second > 0


def test_every_foreign_key_resolves_and_every_track_has_a_main_artist(engine: Engine) -> None:
    assert {(fk.parent.table.name, fk.parent.name, fk.column.table.name, fk.column.name)
            for table in legacy.metadata.tables.values() for fk in table.foreign_keys} == set(FOREIGN_KEYS)
    with engine.connect() as conn:
        assert integrity_problems(conn) == dict.fromkeys(integrity_problems(conn), 0)


def test_isrcs_are_unique_well_formed_and_sometimes_absent(engine: Engine) -> None:
    with engine.connect() as conn:
        isrcs = list(conn.execute(text("SELECT isrc FROM track")).scalars())
    present = [isrc for isrc in isrcs if isrc is not None]
    assert len(set(present)) == len(present)
    assert all(ISRC_PATTERN.match(isrc) for isrc in present)
    assert 0 < len(isrcs) - len(present) < len(isrcs) // 5


def test_the_catalog_looks_like_a_real_one(engine: Engine) -> None:
    with engine.connect() as conn:
        features = catalog_features(conn)
        texts = [*conn.execute(text("SELECT name FROM artist")).scalars(),
                 *conn.execute(text("SELECT title FROM track")).scalars()]
        max_disc = conn.execute(text("SELECT max(disc_no) FROM track")).scalar_one()
    assert all(count > 0 for count in features.values()), features
    assert max_disc <= 3
    assert scripts_present(texts) == set(SCRIPTS)


def test_every_value_keeps_the_catalog_rules(engine: Engine) -> None:
    with engine.connect() as conn:
        queries = ["SELECT name FROM artist", "SELECT title FROM album", "SELECT label FROM album",
                   "SELECT title FROM track", "SELECT name FROM genre"]
        texts = [value for sql in queries for value in conn.execute(text(sql)).scalars() if value is not None]
        present = text("SELECT duration_ms FROM track WHERE duration_ms IS NOT NULL")
        durations = list(conn.execute(present).scalars())
        numbering = conn.execute(text("SELECT min(disc_no), min(track_no) FROM track")).one()
        types = set(conn.execute(text("SELECT DISTINCT album_type FROM album")).scalars())
        roles = set(conn.execute(text("SELECT DISTINCT role FROM track_artist")).scalars())
    assert all(value and value == clean_text(value) for value in texts)
    assert all(1 <= duration <= MAX_DURATION_MS for duration in durations)
    assert tuple(numbering) == (1, 1)
    assert types == {"ALBUM", "SINGLE", "EP", "COMPILATION"}
    assert roles == {"MAIN", "FEATURED", "COMPOSER", "LYRICIST", "ARRANGER"}


def test_a_backfill_rejects_no_generated_track_and_verifies(engine: Engine, tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store")
    try:
        backfill = backfill_tracks(engine, store, batch_size=500)
        report = verify_tracks(engine, store, batch_size=500)
        sample = store.get_many("tracks", [1])[1]
    finally:
        store.close()
    assert backfill.rejected == {}
    assert (backfill.read, backfill.written) == (TRACKS, TRACKS)
    assert report.ok and report.source_rows == TRACKS
    assert sample["artists"][0]["role"] == "MAIN" and sample["updated_at"].endswith("Z")


def test_the_same_seed_writes_the_same_catalog_and_another_seed_does_not(tmp_path: Path) -> None:
    contents = []
    for name, seed in [("a", 7), ("b", 7), ("c", 8)]:
        url = f"sqlite:///{tmp_path / name}.sqlite"
        generate_catalog(url, 400, seed=seed, chunk_size=100)
        engine = make_engine(url)
        contents.append(table_contents(engine))
        engine.dispose()
    assert contents[0] == contents[1]
    assert contents[0]["track"] != contents[2]["track"]


def test_append_continues_after_the_highest_ids(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    generate_catalog(url, 300)
    engine = make_engine(url)
    before = table_contents(engine)
    progress: list[int] = []
    report = generate_catalog(url, 200, mode="append", seed=43, progress=progress.append)
    after = table_contents(engine)
    with engine.connect() as conn:
        problems = integrity_problems(conn)
    engine.dispose()

    assert sum(progress) == 200 and report.counts["track"] == 200 and report.counts["genre"] == 0
    for name in TABLE_ORDER:
        assert after[name][: len(before[name])] == before[name]
        assert len(after[name]) == len(before[name]) + report.counts[name]
    assert [row[0] for row in after["track"]] == list(range(1, 501))
    first_new_artist = max(row[0] for row in before["artist"]) + 1
    assert min(row[0] for row in after["artist"][len(before["artist"]):]) == first_new_artist
    assert problems == dict.fromkeys(problems, 0)


def test_create_refuses_tables_that_hold_rows_and_replace_starts_over(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    generate_catalog(url, 100)
    with pytest.raises(ConfigError, match=r"already hold rows.*--mode append.*--mode replace"):
        generate_catalog(url, 100)
    report = generate_catalog(url, 50, mode="replace")
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM track")).scalar_one() == 50
    engine.dispose()
    assert report.counts["track"] == 50


def test_create_fills_empty_existing_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    engine = make_engine(url)
    legacy.create_legacy_schema(engine)
    engine.dispose()
    assert generate_catalog(url, 20).counts["track"] == 20


def test_progress_reports_every_track_once_in_chunks_of_whole_albums(tmp_path: Path) -> None:
    progress: list[int] = []
    url = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    generate_catalog(url, 1000, chunk_size=100, progress=progress.append)
    assert sum(progress) == 1000
    assert len(progress) > 5 and all(0 < step <= 100 for step in progress[:-1])


@pytest.mark.parametrize(("user_url", "expected"), [
    ("postgresql://tf:pw@db:5432/catalog", "postgresql+psycopg2://tf:pw@db:5432/catalog"),
    ("postgresql+psycopg2://tf:pw@db/catalog", "postgresql+psycopg2://tf:pw@db/catalog"),
    ("mysql://root:pw@db:3306/catalog", "mysql+pymysql://root:pw@db:3306/catalog?charset=utf8mb4"),
    ("mariadb://root:pw@db/catalog", "mysql+pymysql://root:pw@db/catalog?charset=utf8mb4"),
    ("mysql+pymysql://root:pw@db/catalog?charset=utf8", "mysql+pymysql://root:pw@db/catalog?charset=utf8"),
    ("sqlite:///legacy.sqlite", "sqlite:///legacy.sqlite"),
])
def test_user_urls_map_to_the_shipped_drivers(user_url: str, expected: str) -> None:
    assert to_sqlalchemy_url(user_url) == expected


def test_passwords_are_masked() -> None:
    assert mask_password("postgresql://tf:s3cr:et@db:5432/catalog") == "postgresql://tf:***@db:5432/catalog"
    assert mask_password("mysql://root@db/x?password=s3cret&a=1") == "mysql://root@db/x?password=***&a=1"
    assert mask_password("sqlite:///legacy.sqlite") == "sqlite:///legacy.sqlite"


def _tuneflow(monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    """The installed `tuneflow` entry point, with its error handling and exit codes."""
    monkeypatch.setattr(sys, "argv", ["tuneflow", *args])
    return CliRunner().invoke(click.Command("tuneflow", callback=main), [])


def test_cli_generates_and_prints_counts_and_rate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    result = _tuneflow(monkeypatch, "catalog", "generate", "--tracks", "500", "--into", url, "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "track_artist" in result.stdout and "500 tracks in" in result.stdout
    assert "tracks/s" in result.stdout
    assert url in result.stdout

    again = _tuneflow(monkeypatch, "catalog", "generate", "--tracks", "500", "--into", url)
    assert again.exit_code == 2
    assert "already hold rows" in again.stderr


def test_cli_rejects_an_unsupported_url_with_exit_code_2(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _tuneflow(monkeypatch, "catalog", "generate", "--tracks", "10", "--into", "mongodb://tf:s3cret@db/x")
    assert result.exit_code == 2
    assert "unsupported database URL" in result.stderr and "postgresql://" in result.stderr
    assert "s3cret" not in result.output


def test_cli_reports_an_unreachable_database_with_exit_code_3(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _tuneflow(monkeypatch, "catalog", "generate", "--tracks", "10",
                       "--into", "postgresql://tf:s3cret@127.0.0.1:1/catalog")
    assert result.exit_code == 3
    assert "cannot use the database at postgresql://tf:***@127.0.0.1:1/catalog" in result.stderr
    assert "s3cret" not in result.output


def test_a_new_sqlite_file_may_be_in_a_directory_that_does_not_exist_yet(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "legacy.sqlite"
    generate_catalog(f"sqlite:///{path}", 50, seed=1, chunk_size=50)
    engine = make_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM track")).scalar() == 50
    engine.dispose()
