"""The `http` source on real Kafka, called as the catalog's writers call it: NDJSON batches and single requests,
good and bad, each with its exact status and reasons; then the output topic holds every accepted record exactly
once and no rejected one. And a whole `http | normalize | mongo` stream into FerretDB through `tuneflow stream`."""

from __future__ import annotations

import random
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pymongo import MongoClient

from streams.catalog.models import TrackDocument
from streams.catalog.samples import Sample, expected_documents, samples, track
from streams.runtime.metrics import metric_sum
from streams.serde import business_fields, content_checksum, to_plain
from tests.http_client import Answer, Caller
from tests.integration.pipeline import create_topic, read_topic
from tests.integration.processes import AppProcess, free_port, wait_for
from tests.integration.services import unique_name
from tests.integration.test_stream_lifecycle import Cli

TOKEN = "writer-token-" + "9f3c1a7e"
SECRET = b"hmac-secret-" + b"51d0b2c4"
# Records: BATCH_TRACKS tracks in NDJSON batches of BATCH_LINES (5% broken), plus SINGLES_PER_KIND singles of each of
# 13 kinds (507 single requests), the sizes of the issue; the whole exchange takes a few seconds.
BATCH_TRACKS, BATCH_LINES, SINGLES_PER_KIND = 10_000, 500, 39
NDJSON = "application/x-ndjson"


@pytest.fixture
def http_source(tmp_path: Path, kafka_bootstrap: str) -> Iterator[tuple[AppProcess, int, str]]:
    stream, port = unique_name("tfh"), free_port()
    create_topic(kafka_bootstrap, f"{stream}.http", 3)
    (tmp_path / "tokens").write_text(f"# writers\n{TOKEN}\n")
    (tmp_path / "hmac").write_bytes(SECRET + b"\n")
    process = AppProcess(["http", "--stream", stream, "--", f"--port={port}", f"--token-file={tmp_path / 'tokens'}",
                          f"--hmac-secret-file={tmp_path / 'hmac'}"], tmp_path, "http").start()
    try:
        process.wait_ready()
        yield process, port, f"{stream}.http"
    finally:
        process.stop()


def _reasons(answer: Answer) -> set[str]:
    return {reason["field"] for reason in answer.body["reasons"]}


def test_a_writer_gets_exact_answers_and_kafka_holds_each_accepted_record_once(
        http_source: tuple[AppProcess, int, str], kafka_bootstrap: str) -> None:
    process, port, topic = http_source
    caller = Caller(port, TOKEN, SECRET)
    accepted: dict[bytes, dict[str, Any]] = {}  # key → the value Kafka must hold
    refused_ids: set[bytes] = set()

    # NDJSON batches: each line stands alone.
    items = samples(BATCH_TRACKS, invalid_ratio=0.05, seed=31)
    expected = expected_documents(items)
    for start in range(0, len(items), BATCH_LINES):
        batch = items[start:start + BATCH_LINES]
        answer = caller.request("POST", "/tracks/batch", b"\n".join(s.value for s in batch) + b"\n", NDJSON)
        assert answer.status == 202, answer.body
        assert answer.body["accepted"] == sum(s.valid for s in batch)
        broken = [(number, s) for number, s in enumerate(batch, 1) if not s.valid]
        assert [r["line"] for r in answer.body["rejected"]] == [number for number, _ in broken]
        for rejected, (_, sample) in zip(answer.body["rejected"], broken, strict=True):
            assert sample.expected_field in {r["field"] for r in rejected["reasons"]}, (sample.defect, rejected)
            refused_ids.add(sample.key)
    for sample in items:
        if sample.valid:
            accepted[sample.key] = expected[int(sample.key)]

    # Single requests, good and bad, interleaved as many writers would send them.
    rng = random.Random(32)
    next_id = iter(range(500_000, 600_000))

    def fresh() -> tuple[bytes, dict[str, Any]]:
        track_id = next(next_id)
        return str(track_id).encode(), track(track_id, rng)

    def valid() -> None:
        key, doc = fresh()
        answer = caller.request("POST", "/tracks", orjson.dumps(doc))
        assert (answer.status, answer.body) == (202, {"accepted": 1, "track_id": int(key)})
        accepted[key] = to_plain(TrackDocument.model_validate(doc))

    def delete() -> None:
        key, _ = fresh()
        path = f"/tracks/{key.decode()}?updated_at=2024-06-01T00:00:00Z"
        answer = caller.request("DELETE", path, content_type=None)
        assert answer.status == 202, answer.body
        accepted[key] = {"op": "delete", "track_id": int(key), "updated_at": "2024-06-01T00:00:00Z"}

    def refused(status: int, body: bytes, key: bytes, **options: Any) -> Answer:
        answer = caller.request("POST", "/tracks", body, **options)
        assert answer.status == status, (status, answer.status, answer.body)
        assert "Traceback" not in str(answer.body)
        refused_ids.add(key)
        return answer

    def bad_json() -> None:
        key, _ = fresh()
        answer = refused(400, b'{"_id": ' + key + b',\n "title": "cut off', key)
        assert (answer.body["error"], answer.body["line"], answer.body["column"]) == ("malformed-json", 2, 18)

    def wrong_types() -> None:
        key, doc = fresh()
        answer = refused(422, orjson.dumps({**doc, "track_no": "first", "explicit": "maybe"}), key)
        assert _reasons(answer) == {"track_no", "explicit"}

    def bad_isrc() -> None:
        key, doc = fresh()
        assert _reasons(refused(422, orjson.dumps({**doc, "isrc": "KR-12"}), key)) == {"isrc"}

    def no_main_artist() -> None:
        key, doc = fresh()
        answer = refused(422, orjson.dumps({**doc, "artists": [{"artist_id": 3, "name": "X", "role": "LYRICIST"}]}),
                         key)
        assert answer.body["reasons"] == [{"field": "artists",
                                           "message": "Value error, at least one artist with role MAIN is required"}]

    def huge() -> None:
        key, doc = fresh()
        answer = refused(413, orjson.dumps({**doc, "title": "x" * (2 << 20)}), key)
        assert answer.body == {"error": "too-large", "message": "the body is larger than --max-body (1048576 bytes)"}

    def no_token() -> None:
        key, doc = fresh()
        answer = refused(401, orjson.dumps(doc), key, token=None)
        assert answer.headers["www-authenticate"] == 'Bearer realm="tuneflow"'

    def wrong_token() -> None:
        key, doc = fresh()
        answer = refused(401, orjson.dumps(doc), key, token=TOKEN[:-1] + "0")
        assert answer.headers["www-authenticate"] == 'Bearer realm="tuneflow", error="invalid_token"'

    def bad_signature() -> None:
        key, doc = fresh()
        answer = refused(403, orjson.dumps(doc), key, secret=b"not-the-secret")
        assert answer.body == {"error": "forbidden", "message": "bad signature"}

    def stale() -> None:
        key, doc = fresh()
        answer = refused(403, orjson.dumps(doc), key, signed_at=int(time.time()) - 301)
        assert answer.body["message"] == "stale timestamp: more than 300s from the server's clock"

    def wrong_content_type() -> None:
        key, doc = fresh()
        answer = refused(415, orjson.dumps(doc), key, content_type="text/plain")
        assert answer.body["error"] == "unsupported-media-type"

    kinds = [valid, valid, delete, bad_json, wrong_types, bad_isrc, no_main_artist, huge, no_token, wrong_token,
             bad_signature, stale, wrong_content_type]
    calls = [kind for kind in kinds for _ in range(SINGLES_PER_KIND)]
    rng.shuffle(calls)
    for call in calls:
        call()
    caller.close()

    # Kafka: every accepted record exactly once, keyed by its track id, and nothing else.
    produced = read_topic(kafka_bootstrap, topic)
    keys = Counter(key for key, _, _ in produced)
    assert set(keys.values()) == {1}, [k for k, n in keys.items() if n > 1][:5]
    assert set(keys) == set(accepted)
    assert not set(keys) & refused_ids
    values = {key: orjson.loads(value) for key, value, _ in produced}
    assert values == accepted

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        metrics = page.read().decode()
    assert metric_sum(metrics, "tuneflow_http_records_accepted_total") == len(accepted)
    assert metric_sum(metrics, "tuneflow_records_out_total") == len(accepted)
    assert metric_sum(metrics, "tuneflow_http_requests_total", route="/tracks", status="415") == SINGLES_PER_KIND
    assert metric_sum(metrics, "tuneflow_http_requests_total", route="/tracks", status="413") == SINGLES_PER_KIND
    assert metric_sum(metrics, "tuneflow_http_request_seconds_count", route="/tracks/batch") == \
        BATCH_TRACKS // BATCH_LINES
    log = process.log_path.read_bytes()
    for secret in (TOKEN.encode(), SECRET):
        assert secret not in log and secret.decode() not in metrics


def test_a_stream_from_http_through_normalize_into_ferretdb(tmp_path: Path, mongo_uri: str) -> None:
    cli = Cli(tmp_path, mongo_uri)
    stream, database, port = unique_name("th"), unique_name("tf_http"), free_port()
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    definition = f"http --port={port} --token-file={tokens} | normalize | mongo --database={database}"
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    try:
        out = cli.ok("create", stream, "--definition", definition, "--deploy")
        assert f"deployed stream {stream} (release 1)" in out
        items = samples(1000, invalid_ratio=0.0, seed=41)
        caller = Caller(port, TOKEN)
        for start in range(0, len(items), 250):
            answer = caller.request("POST", "/tracks/batch", b"\n".join(s.value for s in items[start:start + 250]),
                                    NDJSON)
            assert (answer.status, answer.body) == (202, {"accepted": 250, "rejected": []})
        first = items[0]
        deleted = caller.request("DELETE", f"/tracks/{int(first.key)}?updated_at=2030-01-01T00:00:00Z",
                                 content_type=None)
        assert deleted.status == 202
        status = cli.json("status", stream)
        http_rows = [row for row in status if row["label"] == "http"]
        assert len(http_rows) == 1 and http_rows[0]["state"] == "up" and http_rows[0]["ready"]
        assert http_rows[0]["records_out"] == len(items) + 1
        # Rates are over the last second: a writer keeps tracks coming until status has sampled them.
        more = samples(20_000, invalid_ratio=0.0, seed=42, first_id=10_001)
        sent: list[Sample] = []
        statuses: list[int] = []
        sampled = threading.Event()

        def write() -> None:
            writer = Caller(port, TOKEN)
            for start in range(0, len(more), 100):
                if sampled.is_set():
                    break
                chunk = more[start:start + 100]
                answer = writer.request("POST", "/tracks/batch", b"\n".join(s.value for s in chunk), NDJSON)
                statuses.append(answer.status)
                sent.extend(chunk)
                time.sleep(0.02)
            writer.close()

        feeder = threading.Thread(target=write)
        feeder.start()
        try:
            flowing = cli.json("status", stream)
        finally:
            sampled.set()
            feeder.join()
        caller.close()
        assert statuses and set(statuses) == {202}
        assert any(row["label"] == "http" and row["in_per_s"] > 0 for row in flowing), flowing
        more = sent

        expected = expected_documents([*items[1:], *more])
        collection = client[database]["tracks"]

        def visible() -> dict[int, dict[str, Any]]:
            return {d["_id"]: business_fields(d) for d in collection.find({"_deleted": {"$ne": True}})}

        wait_for(lambda: len(visible()) == len(expected) and collection.count_documents({"_deleted": True}) == 1,
                 180, "every track in FerretDB and the delete applied")
        assert content_checksum(visible().values()) == content_checksum(expected.values())
    finally:
        cli("undeploy", stream)
        client.drop_database(database)
        client.close()


def test_deploying_an_http_source_without_a_token_fails_at_once_with_its_reason(tmp_path: Path,
                                                                                mongo_uri: str) -> None:
    cli = Cli(tmp_path, mongo_uri)
    cli.env.pop("TUNEFLOW_HTTP_TOKENS", None)
    cli.env["TUNEFLOW_READY_TIMEOUT_S"] = "120"
    stream = unique_name("thn")
    started = time.monotonic()
    failed = cli("create", stream, "--definition", f"http --port={free_port()} | log", "--deploy")
    assert failed.returncode == 3, failed.stderr
    assert time.monotonic() - started < 120  # the wait ended when the instance exited, not at the timeout
    assert "http-0 exited before it became ready" in failed.stderr
    assert "the http source has no token: give --token-file or set TUNEFLOW_HTTP_TOKENS" in failed.stderr
    assert [r["status"] for r in cli.json("history", stream)] == ["failed"]
    cli.ok("destroy", stream)
