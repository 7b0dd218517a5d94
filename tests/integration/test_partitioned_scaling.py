"""Partitioned scaling on real Kafka and FerretDB: a partition key sends each album to one instance, and scaling
out under load adds partitions and loses nothing.

`ingest` keys normalized tracks by album into the named destination `:norm`; `store` writes them to the store
with three mongo instances, and `audit` (another consumer group on the same destination) writes them to one
file per instance, which shows which instance handled which album.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from streams.catalog.samples import expected_documents, samples
from streams.serde import business_fields, content_checksum
from tests.integration.pipeline import create_topic, produce
from tests.integration.processes import wait_for
from tests.integration.services import unique_name
from tests.integration.test_stream_lifecycle import Cli

FIRST, SECOND = 3000, 3000


def _lines(directory: Path) -> dict[str, list[dict[str, Any]]]:
    return {path.name: [json.loads(line) for line in path.read_text().splitlines()]
            for path in sorted(directory.glob("*.ndjson"))}


def test_a_partition_key_keeps_each_album_on_one_instance_and_scaling_out_loses_nothing(
        tmp_path: Path, kafka_bootstrap: str, mongo_uri: str) -> None:
    cli = Cli(tmp_path / "home", mongo_uri)
    ingest, store, audit = unique_name("ingest"), unique_name("store"), unique_name("audit")
    raw, destination, database = f"{ingest}_raw", unique_name("norm"), unique_name("tf_part")
    out = tmp_path / "audit"
    create_topic(kafka_bootstrap, raw, 1)
    cli.ok("create", ingest, "--definition", f"kafka --topic={raw} | normalize --partition-key=album.album_id "
                                             f"> :{destination}")
    cli.ok("create", store, "--definition", f":{destination} > mongo --database={database}")
    cli.ok("create", audit, "--definition", f":{destination} > file --dir={out}")
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    try:
        cli.ok("deploy", store, "--properties", "deployer.mongo.count=3")
        cli.ok("deploy", audit, "--properties", "deployer.file.count=3")
        cli.ok("deploy", ingest)

        first = samples(FIRST, invalid_ratio=0.0, seed=31)
        produce(kafka_bootstrap, raw, [(s.key, s.value, None) for s in first])
        wait_for(lambda: sum(map(len, _lines(out).values())) >= FIRST, 180, "every track in the audit files")
        files_of_album: dict[int, set[str]] = defaultdict(set)
        for name, documents in _lines(out).items():
            for document in documents:
                files_of_album[document["album"]["album_id"]].add(name)
        assert {album: files for album, files in files_of_album.items() if len(files) > 1} == {}
        assert len(set().union(*files_of_album.values())) == 3  # the albums spread over all three instances

        # Scale out under load: more tracks arrive while `audit` goes from 3 to 5 instances.
        second = samples(SECOND, invalid_ratio=0.0, seed=32, first_id=FIRST + 1)
        feeder = threading.Thread(target=produce, args=(kafka_bootstrap, raw,
                                                        [(s.key, s.value, None) for s in second]))
        feeder.start()
        scaled = cli.ok("scale", audit, "file", "--count", "5")
        feeder.join(120)
        assert f"topic {destination}: 3 → 5 partitions" in scaled
        assert "restarted file" in scaled
        wait_for(lambda: {d["_id"] for docs in _lines(out).values() for d in docs} >= set(range(1, FIRST + SECOND + 1)),
                 180, "every track of both rounds in the audit files after scaling")
        assert len(_lines(out)) == 5

        # The store (three mongo instances, the destination now 5 partitions wide) holds exactly the tracks.
        expected = expected_documents(first + second)
        tracks = client[database]["tracks"]
        wait_for(lambda: tracks.count_documents({}) >= len(expected), 180, "every track in the store")
        stored = [business_fields(d) for d in tracks.find({"_deleted": False})]
        assert len(stored) == len(expected)
        assert content_checksum(stored) == content_checksum(expected.values())
    finally:
        for stream in (ingest, store, audit):
            cli("undeploy", stream)
        client.drop_database(database)
        client.close()
