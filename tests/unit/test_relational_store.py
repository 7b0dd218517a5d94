"""The relational document store on SQLite: documents written back through the catalog template's inverse."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.migration.inverse import write_plan
from streams.migration.template import load_template, parse_template
from tests import relational_checks as checks
from tests.migration_oracle import CATALOG_TEMPLATE


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'catalog.sqlite'}"


@pytest.mark.parametrize("check", [checks.check_round_trip, checks.check_version_guard,
                                   checks.check_delete_then_late_older_upsert,
                                   checks.check_misfit_value_rejected_alone, checks.check_unknown_genre_created,
                                   checks.check_unchanged_reference_keeps_its_version])
def test_relational_store(url: str, check: object) -> None:
    with checks.catalog_store(url) as store:
        check(store)  # type: ignore[operator]


def test_catalog_plan_reads_back_what_it_writes() -> None:
    plan = write_plan(load_template(CATALOG_TEMPLATE).collections["tracks"])
    assert plan.tables == ["album", "artist", "genre", "track", "track_artist", "track_genre"]
    artists, genres = plan.arrays
    assert (artists.position_column, artists.links[0].row.lookup) == ("ord", False)
    assert (genres.scalar, genres.links[0].row.lookup) == (True, True)


def test_a_concatenation_cannot_be_written_back() -> None:
    template = parse_template("""
format: 1
collections:
  people:
    table: person
    key: id
    version: [updated_at]
    fields:
      name: {concat: [first, last], separator: " "}
      updated_at: updated_at
""")
    with pytest.raises(ConfigError, match="field 'name': a concat cannot be split back"):
        write_plan(template.collections["people"])
