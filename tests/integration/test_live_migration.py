"""Live migration on the real PostgreSQL / MariaDB, Kafka and FerretDB (tests/live_migration.py tells the story):
a writer keeps changing the catalog while `migrate start` and the catch-up stream (`cdc-… | assemble | mongo`, deployed
with the local deployer before the migration) run; once it stops and the stream drains, `verify` is clean and every
document equals what the final tables give, built independently of the template.

The catalog has `TUNEFLOW_LIVE_TRACKS` tracks (default 200,000, the acceptance size: about 3 minutes per engine on a
quiet 2-core machine); the writer commits `TUNEFLOW_LIVE_WRITES_PER_S` transactions a second (default 5)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.services import service_url
from tests.live_migration import run_live_migration
from tests.live_writer import CatalogWriter

pytestmark = pytest.mark.integration

TRACKS = int(os.environ.get("TUNEFLOW_LIVE_TRACKS", "200000"))
WRITES_PER_S = float(os.environ.get("TUNEFLOW_LIVE_WRITES_PER_S", "5"))


@pytest.mark.parametrize("server", ["postgres", "mariadb"])
def test_a_live_catalog_migrates_catches_up_and_verifies_clean(server: str, tmp_path: Path, mongo_uri: str,
                                                               kafka_bootstrap: str) -> None:
    report = run_live_migration(service_url(server), tracks=TRACKS, writes_per_s=WRITES_PER_S, workdir=tmp_path,
                                mongo_uri=mongo_uri, bootstrap=kafka_bootstrap)
    print(f"\nlive migration from {server}: {report}")
    assert report["writer"]["transactions"] > 10
    # inserts, updates and deletes of tracks, albums, artists and credits all happened during the migration
    assert set(report["writer"]["operations"]) == {operation.__name__ for operation, _ in CatalogWriter.OPERATIONS}
    assert report["assemble_dead_letters"] == 0 and report["mongo_dead_letters"] == 0
    assert report["verify_exit"] == 0, report.get("verify_error") or report["verify"]
    assert all(c["ok"] and c["source_documents"] == c["target_documents"] > 0 for c in report["verify"])
    assert report["differences"] == {}
    assert report["documents"]["tracks"] > TRACKS * 0.9
