"""Migration templates: parsed and checked before anything runs; the catalog template builds today's documents."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from streams.catalog.dburl import make_engine
from streams.catalog.generator import generate_catalog
from streams.errors import ConfigError
from streams.migration.source import bind_template
from streams.migration.template import load_template, parse_template
from streams.migration.template_reader import KeyRange
from streams.serde import business_fields, canonical_json
from tests.migration_oracle import CATALOG_TEMPLATE, assembled_tracks
from tests.unit.cli import Run


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Engine]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('legacy') / 'legacy.sqlite'}"
    generate_catalog(url, 3000, seed=5)
    engine = make_engine(url)
    yield url, engine
    engine.dispose()


def test_catalog_template_builds_the_documents_assemble_builds(legacy: tuple[str, Engine]) -> None:
    _, engine = legacy
    expected = assembled_tracks(engine)
    with engine.connect() as conn:
        reader = bind_template(load_template(CATALOG_TEMPLATE), conn, ["tracks"]).readers["tracks"]
        built = {doc.key: canonical_json(business_fields(doc.document))
                 for after in (None, 1000, 2000) for doc in reader.read(conn, KeyRange(after, (after or 0) + 1000))}
    assert len(built) == len(expected) == 3000
    assert built == expected


def test_albums_count_their_tracks_and_order_their_artists(legacy: tuple[str, Engine]) -> None:
    _, engine = legacy
    with engine.connect() as conn:
        bound = bind_template(load_template(CATALOG_TEMPLATE), conn, ["albums"])
        albums = list(bound.readers["albums"].read(conn, KeyRange()))
        tracks = conn.exec_driver_sql("SELECT album_id, count(*) FROM track GROUP BY album_id").all()
        credits = conn.exec_driver_sql("SELECT album_id, artist_id FROM album_artist ORDER BY album_id, ord").all()
    assert {doc.key: doc.document["track_count"] for doc in albums if doc.document["track_count"]} == dict(tracks)
    assert [(doc.key, artist["artist_id"]) for doc in albums for artist in doc.document["artists"]] == credits


def test_an_unknown_column_exits_2_naming_it(legacy: tuple[str, Engine], tuneflow: Run, tmp_path: Path) -> None:
    url, _ = legacy
    broken = tmp_path / "broken.yaml"
    broken.write_text(CATALOG_TEMPLATE.read_text().replace("column: duration_ms", "column: duration").replace(
        "duration_ms: duration_ms", "duration_ms: duration"))
    result = tuneflow("template", "check", str(broken), "--source", url)
    assert result.returncode == 2
    assert "unknown column 'duration' in table 'track'. Did you mean 'duration_ms'?" in result.stderr


def test_an_unknown_table_exits_2_naming_it(legacy: tuple[str, Engine], tuneflow: Run, tmp_path: Path) -> None:
    url, _ = legacy
    broken = tmp_path / "broken.yaml"
    broken.write_text(CATALOG_TEMPLATE.read_text().replace("table: track_genre", "table: track_genres"))
    result = tuneflow("template", "check", str(broken), "--source", url)
    assert result.returncode == 2
    assert "unknown table 'track_genres'" in result.stderr and "Did you mean 'track_genre'?" in result.stderr


def test_preview_prints_the_document_of_one_key(legacy: tuple[str, Engine], tuneflow: Run) -> None:
    url, _ = legacy
    result = tuneflow("template", "preview", str(CATALOG_TEMPLATE), "--source", url, "--key", "7")
    assert result.returncode == 0, result.stderr
    assert '"_id": 7' in result.stdout and '"artists"' in result.stdout


@pytest.mark.parametrize(("text", "message"), [
    ("format: 1\ncollections: {}\n", "collections"),
    ("format: 2\ncollections: {t: {table: t, key: id, fields: {a: b}}}\n", "format"),
    ("format: 1\ncollections: {t: {table: t, key: id, fields: {a: {column: b, convert: eval}}}}\n", "fields/a"),
    ("format: 1\ncollections: {t: {table: t, key: id, fields: {_id: b}}}\n", "_id"),
    ("format: 1\ntimezone: Mars/Olympus\ncollections: {t: {table: t, key: id, fields: {a: b}}}\n", "timezone"),
    ("format: [1\n", "YAML"),
])
def test_malformed_templates_are_refused_with_the_place(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_template(text)


def test_conversions_enums_computed_values_and_a_source_time_zone(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'small.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE item (id INTEGER PRIMARY KEY, kind INTEGER, flag INTEGER, "
                             "seen TIMESTAMP, day DATE, name TEXT, price NUMERIC)")
        conn.exec_driver_sql("INSERT INTO item VALUES (1, 2, 1, '2024-02-20 18:00:00.250000', '2024-02-20', "
                             "'  Zoë   Ø ', 12.5), (2, 9, 0, NULL, NULL, NULL, NULL)")
    template = parse_template("""
format: 1
timezone: Asia/Seoul
collections:
  items:
    table: item
    key: id
    version: [seen]
    fields:
      kind: {column: kind, map: {1: ONE, 2: TWO}, enum: [ONE, TWO]}
      flag: {column: flag, convert: bool}
      seen: {column: seen, convert: timestamp}
      day: {column: day, convert: date}
      name: {column: name, convert: text, default: unnamed}
      label: {concat: [{const: "#"}, id, {const: " "}, name]}
      shown: {coalesce: [name, {const: "?"}]}
      price: {column: price, convert: float}
""")
    with engine.connect() as conn:
        reader = bind_template(template, conn).readers["items"]
        first, second = list(reader.read(conn, KeyRange()))
    engine.dispose()
    assert first.document == {"_id": 1, "kind": "TWO", "flag": True, "seen": "2024-02-20T09:00:00.250000Z",
                              "day": "2024-02-20", "name": "Zoë Ø", "label": "#1   Zoë   Ø ",
                              "shown": "  Zoë   Ø ", "price": 12.5}
    assert first.version == 1708419600250000
    assert second.document is None and second.error == "kind: column kind is 9, not one of ['ONE', 'TWO']"


@pytest.mark.parametrize(("field", "message"), [
    ("{colunm: b}", "fields/a: unknown key 'colunm'. Did you mean 'column'?"),
    ("{column: b, convert: boolean}", "fields/a: convert: 'boolean' is not one of"),
    ("{array: {table: x, fields: {b: c}}}", "fields/a: array: 'join' is a required property"),
    ("{object: {table: x, join: {a: b}, fields: {c: {column: d, enum: []}}}}",
     "fields/a: object/fields/c/enum: [] should be non-empty"),
])
def test_a_mistake_in_a_field_is_named_as_the_kind_of_field_it_meant(field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_template(f"format: 1\ncollections: {{t: {{table: t, key: id, fields: {{a: {field}}}}}}}\n")
