"""An SCDF export imported and its mapped streams deployed with the local deployer, on real Kafka and FerretDB:
records go through the named destinations, the fan-in and the kafka sink that became a destination."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from pymongo import MongoClient

from tests.integration.pipeline import create_topic, produce, read_topic
from tests.integration.processes import wait_for
from tests.integration.services import unique_name
from tests.integration.test_stream_lifecycle import Cli

EXPORT = Path(__file__).parents[1] / "scdf" / "streams.json"
# The streams of the export that map onto registered apps, in the order they were created (writers first).
RUNNABLE = ["orders-in", "orders-log", "orders-archive", "tracks", "tracks-tap", "eu-in", "us-in", "all-tracks-log",
            "orders-copy"]


@pytest.fixture
def cli(tmp_path: Path, mongo_uri: str) -> Iterator[Cli]:
    tool = Cli(tmp_path / "home", mongo_uri)
    yield tool
    for stream in tool.json("list"):
        tool("undeploy", stream["name"])


def _export(tmp_path: Path, prefix: str, database: str, mongo_uri: str) -> Path:
    """The export with this run's own topics, destinations, directories and database."""
    text = EXPORT.read_text()
    for old, new in [("/tmp/scdf-", f"{tmp_path}/"), ("scdf-", f"{prefix}-"), (":orders", f":{prefix}-placed"),
                     (":all-tracks", f":{prefix}-all"), ("group=audit", f"group={prefix}-audit"),
                     ("scdf_catalog", database), ("mongodb://127.0.0.1:27017", mongo_uri)]:
        text = text.replace(old, new)
    path = tmp_path / "streams.json"
    path.write_text(text)
    return path


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines() if path.exists() else []


def test_the_mapped_streams_of_an_scdf_export_deploy_and_carry_records(
        cli: Cli, kafka_bootstrap: str, mongo_uri: str, tmp_path: Path) -> None:
    prefix, database = unique_name("scdf"), unique_name("tf_scdf")
    result = cli("import", str(_export(tmp_path, prefix, database, mongo_uri)), "--partial")
    assert result.returncode == 1, result.stderr  # some streams of the export are left out, and reported
    created = [s["name"] for s in cli.json("list")]
    assert set(RUNNABLE) <= set(created)
    for topic in ("orders", "tracks", "eu", "us"):
        create_topic(kafka_bootstrap, f"{prefix}-{topic}", 2)
    client: MongoClient[dict[str, object]] = MongoClient(mongo_uri)
    try:
        deployed = {name: cli.ok("deploy", name) for name in RUNNABLE}
        assert all(out.startswith(f"deployed stream {name} (release 1): ") for name, out in deployed.items())
        assert deployed["tracks"] == "deployed stream tracks (release 1): kafka×1, normalize×2, mongodb×1\n"
        assert cli.json("manifest", "orders-log")["apps"][0]["group"] == f"{prefix}-audit"  # `:dest --group=…`
        status = cli.json("status", "tracks")
        assert sorted((s["label"], s["state"], s["ready"]) for s in status) == [
            ("kafka", "up", True), ("mongodb", "up", True), ("normalize", "up", True), ("normalize", "up", True)]

        orders = [(f"o{i}".encode(), orjson.dumps({"order": i}), None) for i in range(5)]
        produce(kafka_bootstrap, f"{prefix}-orders", orders)
        archive = tmp_path / "archive" / "orders.ndjson"
        wait_for(lambda: len(_lines(archive)) >= 5, 120, "the orders in the archive file")
        assert sorted(orjson.loads(line)["order"] for line in _lines(archive)) == [0, 1, 2, 3, 4]
        wait_for(lambda: len(read_topic(kafka_bootstrap, f"{prefix}-orders-copy")) >= 5, 120,
                 "the orders copied by the kafka sink that became a destination")

        produce(kafka_bootstrap, f"{prefix}-eu", [(b"e", orjson.dumps({"from": "eu"}), None)] * 2)
        produce(kafka_bootstrap, f"{prefix}-us", [(b"u", orjson.dumps({"from": "us"}), None)] * 3)
        merged = tmp_path / "all"

        def fanned_in() -> list[str]:
            return sorted(orjson.loads(line)["from"] for f in merged.glob("*.ndjson") for line in _lines(f))

        wait_for(lambda: len(fanned_in()) >= 5, 120, "both sources fanned into one file")
        assert fanned_in() == ["eu", "eu", "us", "us", "us"]
    finally:
        for name in reversed(RUNNABLE):
            cli("undeploy", name)
        client.drop_database(database)
        client.close()
