"""The `tuneflow stream` verbs as a user drives them, on real Kafka and FerretDB, with the local deployer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pymongo import MongoClient

from streams.catalog.samples import expected_documents, samples
from streams.deployers.local import pid_alive
from streams.serde import business_fields, content_checksum
from tests.integration.pipeline import create_topic, produce, read_topic
from tests.integration.processes import wait_for
from tests.integration.services import unique_name


class Cli:
    def __init__(self, home: Path, mongo_uri: str) -> None:
        self.env = {**os.environ, "TUNEFLOW_HOME": str(home), "TUNEFLOW_MONGO_URI": mongo_uri}
        self.env.pop("TUNEFLOW_DB_URL", None)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "streams.cli", "stream", *args], capture_output=True,
                              text=True, env=self.env, timeout=300)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.returncode == 0, f"tuneflow stream {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def json(self, *args: str) -> Any:
        return orjson.loads(self.ok(*args, "--json"))


@pytest.fixture
def cli(tmp_path: Path, mongo_uri: str) -> Iterator[Cli]:
    tool = Cli(tmp_path, mongo_uri)
    yield tool
    for stream in tool.json("list"):  # whatever a failed test left running
        tool("undeploy", stream["name"])


def test_create_deploy_status_update_rollback_undeploy_destroy(cli: Cli, kafka_bootstrap: str, mongo_uri: str) -> None:
    stream, database = unique_name("t1"), unique_name("tf_life")
    raw = f"{stream}_raw"
    create_topic(kafka_bootstrap, raw, 2)
    definition = f"kafka --topic={raw} | normalize | mongo --database={database}"
    assert cli.ok("create", stream, "--definition", definition) == f"created stream {stream}: {definition}\n"
    out = cli.ok("deploy", stream, "--properties", "deployer.normalize.count=2")
    assert out == f"deployed stream {stream} (release 1): kafka×1, normalize×2, mongo×1\n"

    items = samples(4000, invalid_ratio=0.0, seed=9)
    produce(kafka_bootstrap, raw, [(s.key, s.value, None) for s in items])
    expected = expected_documents(items)
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    collection = client[database]["tracks"]
    try:
        wait_for(lambda: collection.count_documents({}) >= len(expected), 180, "every track in the store")
        stored = [business_fields(d) for d in collection.find({"_deleted": False})]
        assert content_checksum(stored) == content_checksum(expected.values())

        status = cli.json("status", stream)
        assert sorted((s["label"], s["index"]) for s in status) == [
            ("kafka", 0), ("mongo", 0), ("normalize", 0), ("normalize", 1)]
        assert {s["state"] for s in status} == {"up"} and all(s["ready"] for s in status)
        assert all(s["records_in"] > 0 for s in status if s["label"] != "normalize")
        assert sum(s["records_out"] for s in status if s["label"] == "normalize") == len(items)
        # Rates are over the last second: keep records flowing while status samples them.
        more = samples(20_000, 0.0, seed=10, first_id=100_001)
        produce(kafka_bootstrap, raw, [(s.key, s.value, None) for s in more])
        flowing = cli.json("status", stream)
        assert any(s["in_per_s"] > 0 for s in flowing), flowing

        manifest = cli.json("manifest", stream)
        assert [(a["label"], a["count"], a["version"]) for a in manifest["apps"]] == [
            ("kafka", 1, "0.1.0"), ("normalize", 2, "0.1.0"), ("mongo", 1, "0.1.0")]
        assert cli.json("info", stream)["deployment_properties"] == "deployer.normalize.count=2"
        again = cli("deploy", stream)
        assert again.returncode == 2 and "already deployed" in again.stderr

        # An update restarts only the app it changes, new instances first, while records keep coming.
        during = samples(6000, 0.0, seed=11, first_id=200_001)
        feeder = threading.Thread(target=lambda: [
            (produce(kafka_bootstrap, raw, [(s.key, s.value, None) for s in during[i:i + 500]]), time.sleep(0.25))
            for i in range(0, len(during), 500)])
        feeder.start()
        updated = cli.ok("update", stream, "--properties",
                         "deployer.normalize.count=1,app.normalize.require-isrc=true").splitlines()
        assert updated[-1] == f"stream {stream} is at release 2: restarted normalize"
        assert "  ~ normalize      changed  options +require-isrc='true'; count 2 → 1" in updated
        assert "  = mongo          same" in updated
        feeder.join()
        after = cli.json("status", stream)
        pids_of = lambda rows, label: sorted(r["pid"] for r in rows if r["label"] == label)  # noqa: E731
        for label in ("kafka", "mongo"):
            assert pids_of(after, label) == pids_of(status, label), f"{label} restarted"
        assert len(pids_of(after, "normalize")) == 1
        assert not set(pids_of(after, "normalize")) & set(pids_of(status, "normalize"))

        # Every record is in the store or, once the new option rules, in the DLQ for lack of an ISRC: none lost.
        later = samples(1000, 0.0, seed=12, first_id=300_001)
        produce(kafka_bootstrap, raw, [(s.key, s.value, None) for s in later])
        everything = expected_documents([*items, *more, *during, *later])

        def dead_letters() -> dict[int, bytes]:
            return {int(key or b"0"): headers["tf-error-reasons"]
                    for key, _, headers in read_topic(kafka_bootstrap, f"{stream}.normalize.dlq")}

        def stored() -> dict[int, dict[str, Any]]:
            return {d["_id"]: business_fields(d) for d in collection.find({"_deleted": False})}

        wait_for(lambda: set(everything) <= set(stored()) | set(dead_letters()), 240,
                 "every record in the store or the DLQ")
        in_store, letters = stored(), dead_letters()
        assert content_checksum(in_store.values()) == content_checksum([everything[k] for k in in_store])
        assert letters and all(everything[k].get("isrc") is None for k in letters)
        assert {orjson.loads(reasons)[0]["field"] for reasons in letters.values()} == {"isrc"}
        later_ids = {int(s.key) for s in later}
        assert {k for k in later_ids if everything[k].get("isrc") is None} == later_ids & set(letters)
        assert {k for k in later_ids if everything[k].get("isrc") is not None} == later_ids & set(in_store)

        rolled = cli.ok("rollback", stream, "--release", "1").splitlines()
        assert rolled[-1] == f"stream {stream} is at release 3: restarted normalize"
        assert [(r["release"], r["status"]) for r in cli.json("history", stream)] == [
            (1, "superseded"), (2, "superseded"), (3, "deployed")]
        assert [a["count"] for a in cli.json("manifest", stream)["apps"]] == [1, 2, 1]
        status = cli.json("status", stream)
        assert len(status) == 4

        pids = [s["pid"] for s in status]
        assert cli.ok("undeploy", stream) == f"undeployed stream {stream}: stopped 4 instances\n"
        assert not any(pid_alive(pid) for pid in pids)
        assert cli.json("status", stream) == []
        assert [r["status"] for r in cli.json("history", stream)] == ["superseded", "superseded", "undeployed"]

        # Redeploying without properties reuses the ones given before.
        assert cli.ok("deploy", stream).endswith("kafka×1, normalize×2, mongo×1\n")
        assert [r["status"] for r in cli.json("history", stream)][-2:] == ["undeployed", "deployed"]
        pids = [s["pid"] for s in cli.json("status", stream)]
        assert len(pids) == 4
        assert cli.ok("destroy", stream) == f"destroyed stream {stream}\n"
        assert not any(pid_alive(pid) for pid in pids)
        assert cli.json("list") == []
    finally:
        client.drop_database(database)
        client.close()


def test_user_mistakes_exit_2_with_a_reason(cli: Cli) -> None:
    stream = unique_name("t2")
    assert cli("create", stream, "--definition", "kafka --topic=x | normalise | log").stderr.startswith(
        "Error: unknown processor app 'normalise'. Did you mean 'normalize'?")
    cli.ok("create", stream, "--definition", "kafka --topic=x | normalize | log")
    duplicate = cli("create", stream, "--definition", "kafka --topic=x | log")
    assert duplicate.returncode == 2 and "already exists" in duplicate.stderr
    bad = cli("deploy", stream, "--properties", "deployer.normalise.count=2")
    assert bad.returncode == 2
    assert bad.stderr == ("Error: deployment property 'deployer.normalise.count' names no app of the stream. "
                          "Did you mean 'normalize'? Apps: kafka, normalize, log\n")
    option = cli("deploy", stream, "--properties", "app.log.levle=INFO")
    assert option.returncode == 2 and "--levle: unknown option" in option.stderr
    assert cli.json("list")[0]["status"] == "undeployed"


def test_a_tap_copies_the_normalized_records_and_a_failed_update_keeps_the_old_instances(
        cli: Cli, kafka_bootstrap: str, mongo_uri: str, tmp_path: Path) -> None:
    stream, database = unique_name("t3"), unique_name("tf_life")
    raw = f"{stream}_raw"
    create_topic(kafka_bootstrap, raw, 2)
    cli.ok("create", stream, "--definition", f"kafka --topic={raw} | normalize | mongo --database={database}",
           "--deploy")
    tap, taps = unique_name("tap"), tmp_path / "taps"
    cli.ok("create", tap, "--definition", f":{stream}.normalize > file --dir={taps} --name=copy.ndjson", "--deploy")
    items = samples(3000, invalid_ratio=0.05, seed=12)
    produce(kafka_bootstrap, raw, [(s.key, s.value, None) for s in items])
    expected = expected_documents(items)
    copy = taps / "copy.ndjson"

    def copied() -> int:
        return len(copy.read_bytes().splitlines()) if copy.exists() else 0

    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    try:
        wait_for(lambda: copied() >= sum(s.valid for s in items), 180, "the tap's full copy")
        tapped = {orjson.loads(line)["_id"] for line in copy.read_bytes().splitlines()}
        assert tapped == set(expected)

        # A new mongo that can never become ready: the update fails and the old instance keeps running.
        before = {s["label"]: s["pid"] for s in cli.json("status", stream)}
        cli.env["TUNEFLOW_READY_TIMEOUT_S"] = "5"
        failed = cli("update", stream, "--properties", "app.mongo.uri=mongodb://127.0.0.1:1")
        assert failed.returncode == 3
        assert "mongo-0 did not become ready within 5s" in failed.stderr
        after = {s["label"]: s["pid"] for s in cli.json("status", stream)}
        assert after == before and all(pid_alive(pid) for pid in after.values())
        assert [r["status"] for r in cli.json("history", stream)] == ["deployed", "failed"]
        wait_for(lambda: client[database]["tracks"].count_documents({}) >= len(expected), 120,
                 "the old sink still writing")
        cli.ok("destroy", tap)
        cli.ok("destroy", stream)
    finally:
        client.drop_database(database)
        client.close()


def _lines_by_id(directory: Path) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    for path in directory.glob("*.ndjson"):
        for line in path.read_bytes().splitlines():
            document = orjson.loads(line)
            found.setdefault(document["_id"], []).append(document)
    return found


def test_a_new_definition_adds_then_removes_an_app_without_losing_records(
        cli: Cli, kafka_bootstrap: str, tmp_path: Path) -> None:
    stream, out = unique_name("t4"), tmp_path / "out"
    raw = f"{stream}_raw"
    create_topic(kafka_bootstrap, raw, 2)
    plain, normalized = f"kafka --topic={raw} | file --dir={out}", f"kafka --topic={raw} | normalize | file --dir={out}"
    cli.ok("create", stream, "--definition", plain, "--deploy")
    first = samples(2000, 0.0, seed=21)
    produce(kafka_bootstrap, raw, [(s.key, s.value, None) for s in first])
    wait_for(lambda: len(_lines_by_id(out)) >= len(first), 120, "the first records in the file")

    dry = cli.ok("update", stream, "--definition", normalized, "--dry-run").splitlines()
    assert dry[:2] == [f"- {plain}", f"+ {normalized}"]
    assert dry[2].startswith("  = kafka          same")
    assert dry[3] == f"  + normalize      added  normalize (in: {stream}.kafka, out: {stream}.normalize, ×1)"
    assert dry[4] == f"  ~ file           changed  inputs {stream}.kafka → {stream}.normalize"
    assert dry[-1] == f"dry run: stream {stream} is unchanged"
    assert cli.json("info", stream)["canonical"] == plain and len(cli.json("history", stream)) == 1

    # Insert a processor while records keep arriving: none is lost, the kafka source keeps running.
    before = {s["label"]: s["pid"] for s in cli.json("status", stream)}
    during = samples(3000, 0.0, seed=22, first_id=10_001)
    feeder = threading.Thread(target=lambda: [
        (produce(kafka_bootstrap, raw, [(s.key, s.value, None) for s in during[i:i + 300]]), time.sleep(0.2))
        for i in range(0, len(during), 300)])
    feeder.start()
    inserted = cli.ok("update", stream, "--definition", normalized).splitlines()
    feeder.join()
    assert inserted[-1] == f"stream {stream} is at release 2: restarted file; started normalize"
    after = {s["label"]: s["pid"] for s in cli.json("status", stream)}
    assert after["kafka"] == before["kafka"] and after["file"] != before["file"] and "normalize" in after
    assert not pid_alive(before["file"])
    assert cli.json("info", stream)["canonical"] == normalized
    later = samples(1000, 0.0, seed=23, first_id=20_001)
    produce(kafka_bootstrap, raw, [(s.key, s.value, None) for s in later])
    wait_for(lambda: {int(s.key) for s in [*first, *during, *later]} <= set(_lines_by_id(out)), 180,
             "every record through the rollout")
    written = _lines_by_id(out)
    assert [business_fields(written[key][-1]) for key in sorted(expected_documents(later))] == \
        [expected_documents(later)[key] for key in sorted(expected_documents(later))]

    # An app another stream taps cannot go away.
    tap = unique_name("tap")
    cli.ok("create", tap, "--definition", f":{stream}.normalize > log")
    refused = cli("update", stream, "--definition", plain)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"Error: stream '{tap}' depends on '{stream}' and would break: ")
    cli.ok("destroy", tap)

    # A deployment property of normalize: it goes away with normalize and comes back with a rollback.
    tuned = cli.ok("update", stream, "--properties", "app.normalize.require-isrc=false").splitlines()
    assert tuned[-1] == f"stream {stream} is at release 3: restarted normalize"

    # Take the processor out again: the old sink drains what normalize flushed before it stops.
    removed = cli.ok("update", stream, "--definition", plain).splitlines()
    assert removed[0] == ("deployment properties dropped (no such app in the new definition): "
                          "app.normalize.require-isrc")
    assert removed[-1] == f"stream {stream} is at release 4: restarted file; stopped normalize"
    assert "normalize" not in {s["label"] for s in cli.json("status", stream)}
    assert not cli.json("info", stream)["deployment_properties"]
    assert cli.json("manifest", stream)["deployment_properties"]["parsed"] == {}
    last = samples(1000, 0.0, seed=24, first_id=30_001)
    produce(kafka_bootstrap, raw, [(s.key, s.value, None) for s in last])
    everything = {int(s.key) for s in [*first, *during, *later, *last]}
    wait_for(lambda: everything <= set(_lines_by_id(out)), 180, "every record after the removal")
    assert [r["status"] for r in cli.json("history", stream)] == ["superseded"] * 3 + ["deployed"]
    assert cli.json("manifest", stream, "--release", "2")["definition"] == normalized

    # Rolling back to release 3 brings its definition back, processor and its property included.
    back = cli.ok("rollback", stream, "--release", "3").splitlines()
    assert back[-1] == f"stream {stream} is at release 5: restarted file; started normalize"
    info = cli.json("info", stream)
    assert info["canonical"] == normalized and info["deployment_properties"] == "app.normalize.require-isrc=false"
    assert {s["label"] for s in cli.json("status", stream)} == {"kafka", "normalize", "file"}
    final = samples(500, 0.0, seed=25, first_id=40_001)
    produce(kafka_bootstrap, raw, [(s.key, s.value, None) for s in final])
    wait_for(lambda: {int(s.key) for s in final} <= set(_lines_by_id(out)), 180, "records after the rollback")
    cli.ok("destroy", stream)
