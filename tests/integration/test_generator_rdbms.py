"""The synthetic catalog in the real PostgreSQL and MariaDB: loaded intact, the same rows as in SQLite."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from streams.catalog.dburl import make_engine
from streams.catalog.generator import generate_catalog
from tests.unit.test_generator import catalog_features, integrity_problems, scripts_present, table_contents

pytestmark = pytest.mark.integration

TRACKS = 100_000
SEED = 11


@pytest.fixture(scope="module")
def sqlite_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[object, ...]]]:
    """The same seed's catalog in SQLite: what every engine must hold, row for row."""
    url = f"sqlite:///{tmp_path_factory.mktemp('reference') / 'legacy.sqlite'}"
    generate_catalog(url, TRACKS, seed=SEED)
    engine = make_engine(url)
    try:
        return table_contents(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize("engine_fixture", ["postgres_engine", "mariadb_engine"])
def test_a_100k_track_catalog_loads_intact(
    engine_fixture: str, request: pytest.FixtureRequest, sqlite_reference: dict[str, list[tuple[object, ...]]]
) -> None:
    engine: Engine = request.getfixturevalue(engine_fixture)
    progress: list[int] = []
    report = generate_catalog(engine.url.render_as_string(hide_password=False), TRACKS, seed=SEED,
                              progress=progress.append)

    assert report.counts["track"] == TRACKS and sum(progress) == TRACKS
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM track")).scalar_one() == TRACKS
        problems = integrity_problems(conn)
        features = catalog_features(conn)
        isrcs = conn.execute(text("SELECT count(isrc), count(DISTINCT isrc) FROM track")).one()
        names = list(conn.execute(text("SELECT name FROM artist")).scalars())
    assert problems == dict.fromkeys(problems, 0)
    assert all(count > 0 for count in features.values()), features
    assert isrcs[0] == isrcs[1] > TRACKS * 0.8
    assert any(not name.isascii() for name in names)
    assert len(scripts_present(names)) == 7

    stored = table_contents(engine)
    for table, rows in sqlite_reference.items():
        assert stored[table] == rows, f"{table} differs from the SQLite reference"


def test_mariadb_tables_are_innodb_utf8mb4_with_microsecond_timestamps(mariadb_engine: Engine) -> None:
    generate_catalog(mariadb_engine.url.render_as_string(hide_password=False), 50)
    with mariadb_engine.connect() as conn:
        tables = conn.execute(text(
            "SELECT table_name, engine, table_collation FROM information_schema.tables "
            "WHERE table_schema = DATABASE()"
        )).all()
        precision = conn.execute(text(
            "SELECT DISTINCT datetime_precision FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND column_name = 'updated_at'"
        )).scalars().all()
    assert len(tables) == 7
    assert {engine for _, engine, _ in tables} == {"InnoDB"}
    assert all(collation.startswith("utf8mb4") for _, _, collation in tables)
    assert precision == [6]


@pytest.mark.parametrize("engine_fixture", ["postgres_engine", "mariadb_engine"])
def test_append_and_replace_on_a_real_server(engine_fixture: str, request: pytest.FixtureRequest) -> None:
    engine: Engine = request.getfixturevalue(engine_fixture)
    url = engine.url.render_as_string(hide_password=False)
    generate_catalog(url, 2000)
    appended = generate_catalog(url, 1000, mode="append", seed=7)
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT min(track_id), max(track_id), count(*) FROM track")).one()
        problems = integrity_problems(conn)
    assert appended.counts["genre"] == 0
    assert tuple(ids) == (1, 3000, 3000)
    assert problems == dict.fromkeys(problems, 0)

    generate_catalog(url, 500, mode="replace")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM track")).scalar_one() == 500
