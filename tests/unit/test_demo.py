"""`tuneflow demo` as a newcomer runs it: the whole story on embedded defaults, and what its summary claims."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.stores.embedded import EmbeddedStore
from tests.unit.cli import in_process


def test_the_demo_tells_the_whole_migration_and_checks_what_it_claims(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    tuneflow = in_process(tmp_path / "home", monkeypatch, capsys)
    result = tuneflow("demo", "--tracks", "3000", "--batch-size", "1000", "--writes-per-s", "300")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout

    for step in range(1, 9):
        assert f"{step}/8 " in out
    # Both verifies clean, each collection named.
    assert out.count("OK — the target matches the source") == 2
    assert "tracks: source 3,000, target 3,000 — missing 0, extra 0, different 0" in out
    # The gate was passed for both forward moves into MongoDB reads, each check named.
    assert out.count("gate: ok  shadow backlog: empty (demo.dual-write.repair)") == 2
    assert out.count("gate: ok  clean verify: clean at") == 2
    moves = re.findall(r"switch demo: (\S+) → (\S+) \(epoch \d+\)", out)
    assert moves == [("legacy", "dual-rdbms-primary"), ("dual-rdbms-primary", "dual-mongo-primary"),
                     ("dual-mongo-primary", "dual-rdbms-primary"), ("dual-rdbms-primary", "dual-mongo-primary")]
    # Reads follow the switch.
    stores = re.findall(r"GET /tracks/\d+ → 200, read from the (\w+) store", out)
    assert stores == ["mongo", "rdbms", "mongo"]
    live = re.search(r"([\d,]+) tracks written live: each one in both stores at its last acknowledged version", out)
    assert live is not None and int(live.group(1).replace(",", "")) > 100
    accepted = re.search(r"A live writer sent ([\d,]+) track updates over HTTP while it ran \(0 rejected, "
                         r"0 requests refused\)", out)
    assert accepted is not None and int(accepted.group(1).replace(",", "")) > 100
    assert "reads older than an earlier read of the same track: 0." in out
    token = (tmp_path / "home" / "demo" / "tokens").read_text().strip()
    assert token not in out and token not in result.stderr

    store = EmbeddedStore(tmp_path / "home" / "demo" / "store")
    try:
        assert store.count("tracks") == 3000
        edited = sum(1 for batch in store.scan("tracks") for doc in batch if "(live edit " in doc["title"])
        assert edited == int(live.group(1).replace(",", ""))
    finally:
        store.close()
