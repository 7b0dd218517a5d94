"""The `http` source served for real (uvicorn on a free port) over the memory binder, driven as a caller would:
answers, records on the output topic, auth, signatures, limits, outages. No services needed."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from openapi_spec_validator import validate

from processors.normalize import Normalize, NormalizeOptions
from streams.binders.memory import MemoryBinder, MemoryOutput
from streams.catalog.changes import ADAPTER
from streams.catalog.samples import DEFECTS, samples
from streams.errors import ConfigError, TransientError
from streams.http.auth import Signatures, sign
from streams.records import Record
from streams.runtime.launch import build_instance
from streams.runtime.retry import RetryPolicy
from streams.runtime.runner import RunSpec
from tests.http_client import raw_exchange
from tests.unit.fixtures import track_payload

TOKEN = "t0ken-unit-Secret"
SECRET = b"hmac-unit-Secret"
NDJSON = {"content-type": "application/x-ndjson"}


class FlakyBinder(MemoryBinder):
    """A memory binder whose producer cannot deliver while `down` is set, as when Kafka is unreachable."""

    def __init__(self) -> None:
        super().__init__()
        self.down = threading.Event()

    def output(self, transactional_id: str | None = None) -> MemoryOutput:
        binder = self

        class Flaky(MemoryOutput):
            def flush(self, timeout_s: float = 30.0) -> None:
                if binder.down.is_set():
                    time.sleep(0.2)
                    raise TransientError("1 records were not delivered (first: _TRANSPORT)")
                super().flush(timeout_s)

        return Flaky(self)


class Served:
    def __init__(self, binder: MemoryBinder, options: dict[str, Any], run: bool = True) -> None:
        self.binder = binder
        spec = RunSpec(stream="u", label="http", output="u.http", batch_timeout_s=0.05,
                       retry=RetryPolicy(initial_s=0.05, max_delay_s=0.2, give_up_after_s=60))
        self.instance = build_instance("http", "source", {"port": 0, **options}, spec, binder)
        self.runner = self.instance.runner
        self.thread: threading.Thread | None = None
        if run:
            self.thread = threading.Thread(target=self.runner.run, daemon=True)
            self.thread.start()
            deadline = time.monotonic() + 10
            while not self.runner.metrics.is_ready():
                assert time.monotonic() < deadline, "the http source did not become ready"
                time.sleep(0.01)
        else:
            self.runner.app.setup()
        self.port = self.runner.app._server.port  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def post(self, path: str, body: bytes | str, content_type: str = "application/json", token: str | None = TOKEN,
             **headers: str) -> httpx.Response:
        sent = {"content-type": content_type, **headers}
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        return self.client.post(path, content=body, headers=sent)

    def records(self) -> list[Record]:
        reader = self.binder.input(["u.http"], f"check-{time.monotonic_ns()}", "check")
        out: list[Record] = []
        while batch := reader.poll(10_000, 0.05):
            out.extend(batch)
        reader.close()
        return out

    def metrics(self) -> str:
        return self.client.get("/metrics").text

    def stop(self) -> None:
        self.client.close()
        if self.thread is not None:
            self.runner.stop()
            self.thread.join(10)
        else:
            self.runner.app.close()


@contextmanager
def served(binder: MemoryBinder | None = None, run: bool = True, **options: Any) -> Iterator[Served]:
    if "insecure-no-auth" not in options and "token-file" not in options:
        os.environ["TUNEFLOW_HTTP_TOKENS"] = f"other-token, {TOKEN}"
    server = Served(binder or MemoryBinder(), options, run)
    try:
        yield server
    finally:
        server.stop()
        os.environ.pop("TUNEFLOW_HTTP_TOKENS", None)


def body_of(track_id: int, **overrides: Any) -> bytes:
    return orjson.dumps(track_payload(track_id, **overrides))


def test_a_valid_track_is_answered_202_once_it_is_on_the_output_topic_keyed_by_its_id() -> None:
    with served() as server:
        answer = server.post("/tracks", body_of(7, title="  Love\u00a0 wins ", isrc="kr-a30-24-00001"))
        assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "track_id": 7})
        [record] = server.records()
        assert record.key == b"7"
        document = orjson.loads(record.value)
        assert (document["_id"], document["title"], document["isrc"]) == (7, "Love wins", "KRA302400001")
        assert "tuneflow_http_records_accepted_total" in server.metrics()


def test_a_single_record_fails_with_every_field_and_message_and_is_never_produced() -> None:
    with served() as server:
        broken = body_of(8, isrc="KR-12", artists=[{"artist_id": 1, "name": "X", "role": "COMPOSER"}],
                         duration_ms="long")
        answer = server.post("/tracks", broken)
        assert answer.status_code == 422
        assert {r["field"] for r in answer.json()["reasons"]} == {"isrc", "artists", "duration_ms"}
        malformed = server.post("/tracks", b'{\n  "_id": 9,\n  "title": }')
        assert malformed.status_code == 400
        assert (malformed.json()["error"], malformed.json()["line"], malformed.json()["column"]) == \
            ("malformed-json", 3, 12)
        assert server.post("/tracks", b"", content_type="application/json").status_code == 400
        assert server.records() == []
        assert 'reason="invalid"' in server.metrics()


def test_a_batch_answers_each_line_alone_and_produces_only_the_accepted_ones() -> None:
    with served() as server:
        lines = [body_of(1), b"", body_of(2, isrc="bad"), b'{"_id": 3, "title": "cut', body_of(4),
                 b'{"op": "delete", "track_id": 5, "updated_at": "2024-01-01T00:00:00Z"}']
        answer = server.post("/tracks/batch", b"\r\n".join(lines) + b"\n", "application/x-ndjson")
        assert answer.status_code == 202
        body = answer.json()
        assert body["accepted"] == 3
        assert [(r["line"], [x["field"] for x in r["reasons"]]) for r in body["rejected"]] == [(3, ["isrc"]), (4, [""])]
        assert body["rejected"][1]["reasons"][0]["message"].endswith("at column 24")
        assert [r.key for r in server.records()] == [b"1", b"4", b"5"]
        nothing = server.post("/tracks/batch", b"[]\n{}\n", "application/x-ndjson")
        assert nothing.status_code == 422 and nothing.json()["accepted"] == 0 and len(nothing.json()["rejected"]) == 2


def test_a_delete_is_versioned_and_its_id_checked() -> None:
    with served() as server:
        headers = {"authorization": f"Bearer {TOKEN}"}
        ok = server.client.delete("/tracks/12", params={"updated_at": "2024-03-01T00:00:00Z"}, headers=headers)
        assert (ok.status_code, ok.json()) == (202, {"accepted": 1, "track_id": 12})
        unversioned = server.client.delete("/tracks/12", headers=headers)
        assert unversioned.status_code == 422 and unversioned.json()["reasons"][0]["field"] == "updated_at"
        for too_wide in (2**63, 2**64, 10**30, 0):
            refused = server.client.delete(f"/tracks/{too_wide}", params={"updated_at": "2024-03-01T00:00:00Z"},
                                           headers=headers)
            assert refused.status_code == 422, too_wide
            assert [r["field"] for r in refused.json()["reasons"]] == ["track_id"]
        bad = server.client.delete("/tracks/abc", params={"updated_at": "yesterday"}, headers=headers)
        assert bad.status_code == 422
        assert {r["field"] for r in bad.json()["reasons"]} == {"track_id", "updated_at"}
        [record] = server.records()
        assert record.key == b"12"
        assert orjson.loads(record.value) == {"op": "delete", "track_id": 12, "updated_at": "2024-03-01T00:00:00Z"}


def test_routes_methods_and_content_types() -> None:
    with served() as server:
        assert server.client.get("/nowhere").status_code == 404
        wrong_method = server.client.get("/tracks")
        assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")
        assert server.post("/tracks", body_of(1), "text/plain").status_code == 415
        assert server.post("/tracks/batch", body_of(1), "application/json").status_code == 415
        assert server.post("/tracks", body_of(1), "application/json; charset=utf-8").status_code == 202
        assert server.client.get("/healthz").status_code == 200
        assert server.client.get("/readyz").status_code == 200
        assert all(r.key == b"1" for r in server.records())


def test_tokens_are_required_and_a_token_file_rotates_without_a_restart(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# writers\nfirst-token\n")
    with served(**{"token-file": str(tokens)}) as server:
        missing = server.post("/tracks", body_of(1), token=None)
        assert (missing.status_code, missing.headers["www-authenticate"]) == (401, 'Bearer realm="tuneflow"')
        wrong = server.post("/tracks", body_of(1), token="nope")
        assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
        assert server.post("/tracks", body_of(1), token="first-token").status_code == 202
        tokens.write_text("second-token\n")
        time.sleep(1.1)
        assert server.post("/tracks", body_of(2), token="first-token").status_code == 401
        assert server.post("/tracks", body_of(2), token="second-token").status_code == 202
        tokens.unlink()
        time.sleep(1.1)
        assert server.post("/tracks", body_of(3), token="second-token").status_code == 401  # fails closed


def test_no_token_refuses_to_start_unless_insecure(tmp_path: Path) -> None:
    os.environ.pop("TUNEFLOW_HTTP_TOKENS", None)
    empty = tmp_path / "empty"
    empty.write_text("\n# none yet\n")
    for options in ({}, {"token-file": str(empty)}):
        with pytest.raises(ConfigError, match="no token"):
            Served(MemoryBinder(), options, run=False)
    with pytest.raises(ConfigError, match="cannot read the token file"):
        Served(MemoryBinder(), {"token-file": str(tmp_path / "absent")}, run=False)
    with served(**{"insecure-no-auth": True}) as server:
        assert server.post("/tracks", body_of(1), token=None).status_code == 202


def test_reads_that_follow_a_migration_need_the_rdbms_to_read() -> None:
    with pytest.raises(ConfigError, match="--migration needs --read-rdbms-url"):
        Served(MemoryBinder(), {"insecure-no-auth": True, "migration": "catalog"}, run=False)


def test_signatures_refuse_bad_stale_replayed_and_unsigned_requests(tmp_path: Path) -> None:
    secret = tmp_path / "hmac"
    secret.write_bytes(SECRET + b"\n")
    with served(**{"hmac-secret-file": str(secret), "hmac-window-s": 60}) as server:
        def signed(body: bytes, at: int | None = None, key: bytes = SECRET, path: str = "/tracks") -> dict[str, str]:
            stamp = str(at if at is not None else int(time.time()))
            return {"x-tuneflow-timestamp": stamp, "x-tuneflow-signature": sign(key, stamp, "POST", path, body)}

        body = body_of(1)
        good = signed(body)
        assert server.post("/tracks", body, **good).status_code == 202
        replay = server.post("/tracks", body, **good)
        assert (replay.status_code, replay.json()["error"]) == (403, "forbidden")
        assert "replayed" in replay.json()["message"]
        assert "bad signature" in server.post("/tracks", body, **signed(body, key=b"guess")).json()["message"]
        assert "bad signature" in server.post("/tracks", body_of(2), **signed(body)).json()["message"]
        stale = server.post("/tracks", body, **signed(body, at=int(time.time()) - 61))
        assert stale.status_code == 403 and "stale" in stale.json()["message"]
        assert server.post("/tracks", body).status_code == 403
        assert server.post("/tracks", body, **signed(body), token="nope").status_code == 401
        batch = body_of(3) + b"\n"
        assert server.post("/tracks/batch", batch, "application/x-ndjson",
                           **signed(batch, path="/tracks/batch")).status_code == 202
        assert [r.key for r in server.records()] == [b"1", b"3"]


def _head(path: str, length: int | None, content_type: str = "application/json") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: {content_type}\r\n"
            f"{size}\r\n").encode()


def test_limits_refuse_large_bodies_long_batches_and_slow_callers() -> None:
    with served(**{"max-body": "64KiB", "max-batch": 3, "header-timeout-s": 0.5, "body-timeout-s": 0.5}) as server:
        declared = raw_exchange(server.port, _head("/tracks", 2 << 20), [b"x" * 65536] * 32, pause_s=0.05)
        assert declared.startswith(b"HTTP/1.1 413 ") and b"connection: close" in declared
        assert b"--max-body (65536 bytes)" in declared
        chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
        streamed = raw_exchange(server.port, _head("/tracks", None), [chunk] * 32, pause_s=0.05)
        assert streamed.startswith(b"HTTP/1.1 413 ")
        four = b"\n".join(body_of(i) for i in range(1, 5))
        too_many = server.post("/tracks/batch", four, "application/x-ndjson")
        assert (too_many.status_code, too_many.json()["error"]) == (413, "too-many-lines")
        slow_body = raw_exchange(server.port, _head("/tracks", 100) + b'{"_id": 1')
        assert slow_body.startswith(b"HTTP/1.1 408 ")
        slow_headers = raw_exchange(server.port, b"POST /tracks HTTP/1.1\r\nHost: x\r\n")
        assert slow_headers.startswith(b"HTTP/1.1 408 ")
        huge_headers = raw_exchange(server.port, b"GET /healthz HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 100_000)
        assert huge_headers.startswith(b"HTTP/1.1 431 ")
        assert server.records() == []
        assert server.client.get("/healthz").status_code == 200


def test_kafka_unreachable_answers_503_with_retry_after_and_recovers_by_itself() -> None:
    binder = FlakyBinder()
    with served(binder, **{"ack-timeout-s": 1, "retry-after-s": 7}) as server:
        assert server.post("/tracks", body_of(1)).status_code == 202
        binder.down.set()
        waiting = server.post("/tracks", body_of(2))  # taken by the producer, never acknowledged in time
        assert (waiting.status_code, waiting.headers["retry-after"]) == (503, "7")
        assert "may be written" in waiting.json()["message"]
        deadline = time.monotonic() + 10
        while server.client.get("/readyz").status_code != 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        refused = server.post("/tracks", body_of(3))
        assert (refused.status_code, refused.headers["retry-after"]) == (503, "7")
        binder.down.clear()
        deadline = time.monotonic() + 10
        while server.client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert server.post("/tracks", body_of(4)).status_code == 202
        keys = [r.key for r in server.records()]
        assert keys.count(b"1") == 1 and keys.count(b"4") == 1 and b"3" not in keys


def test_memory_stays_bounded_when_nothing_takes_the_records() -> None:
    with served(run=False, **{"ack-timeout-s": 0.5, "max-buffered": "4KiB"}) as server:
        assert server.post("/tracks", body_of(1)).status_code == 503  # not ready yet
        server.runner.metrics.ready.set(1)
        stuck = server.post("/tracks", body_of(1))
        assert stuck.status_code == 503 and "none was written" in stuck.json()["message"]
        intake = server.runner.app._intake  # type: ignore[attr-defined]
        assert intake.waiting == 0  # withdrawn: a 503 that says nothing was written leaves nothing behind
        big = b"\n".join(body_of(i) for i in range(1, 9))
        over = server.post("/tracks/batch", big, "application/x-ndjson")
        assert over.status_code == 503 and "too many bytes in flight" in over.json()["message"]


def test_openapi_is_valid_3_1_with_every_route_and_the_catalog_schema() -> None:
    with served() as server:
        document = server.client.get("/openapi.json").json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {"/tracks", "/tracks/batch", "/tracks/{id}", "/healthz", "/readyz",
                                      "/metrics", "/openapi.json"}
    generated = ADAPTER.json_schema(ref_template="#/components/schemas/{model}")
    schemas = document["components"]["schemas"]
    assert {k: v for k, v in schemas["TrackChange"].items() if k != "description"} == \
        {k: v for k, v in generated.items() if k != "$defs"}
    assert all(schemas[name] == schema for name, schema in generated["$defs"].items())


def test_no_token_or_secret_in_logs_metrics_or_answers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = tmp_path / "hmac"
    secret.write_bytes(SECRET)
    caplog.set_level(logging.DEBUG)
    with served(**{"hmac-secret-file": str(secret)}) as server:
        answers = [server.post("/tracks", body_of(1), token=TOKEN + "x"),
                   server.post("/tracks", body_of(1), **{"x-tuneflow-signature": "sha256=00",
                                                         "x-tuneflow-timestamp": str(int(time.time()))})]
        seen = "\n".join(a.text + str(a.headers) for a in answers) + server.metrics() + caplog.text
    assert [a.status_code for a in answers] == [401, 403]
    for secret_text in (TOKEN, SECRET.decode(), "other-token"):
        assert secret_text not in seen


def test_stopping_answers_every_waiting_request_with_what_was_written() -> None:
    with served(run=False, **{"ack-timeout-s": 20}) as server:
        server.runner.metrics.ready.set(1)
        intake = server.runner.app._intake  # type: ignore[attr-defined]
        answers: list[httpx.Response] = []
        first = threading.Thread(target=lambda: answers.append(server.post("/tracks", body_of(1))))
        first.start()
        wait_until(lambda: intake.waiting == 1)
        assert [r.key for r in intake.take(10, 0)] == [b"1"]  # in the producer's hands, never acknowledged
        second = threading.Thread(target=lambda: answers.append(server.post("/tracks", body_of(2))))
        second.start()
        wait_until(lambda: intake.waiting == 1)
        started = time.monotonic()
        intake.close()
        first.join(10)
        second.join(10)
        assert time.monotonic() - started < 5  # answered at once, not at the ack timeout
        messages = sorted(a.json()["message"] for a in answers)
        assert [a.status_code for a in answers] == [503, 503]
        assert "nothing was written" in messages[0] and "may be written" in messages[1]


def wait_until(condition: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_http_and_normalize_reject_a_record_with_the_same_reasons() -> None:
    broken = [s for s in samples(400, invalid_ratio=0.1, seed=5) if not s.valid]
    assert {s.defect for s in broken} == set(DEFECTS)
    failures = Normalize(NormalizeOptions(), context=None).process(  # type: ignore[arg-type]
        [Record(s.key, s.value) for s in broken]).failures
    with served() as server:
        answer = server.post("/tracks/batch", b"\n".join(s.value for s in broken), "application/x-ndjson")
    assert answer.status_code == 422
    by_line = {r["line"]: r["reasons"] for r in answer.json()["rejected"]}
    for line, (sample, failure) in enumerate(zip(broken, failures, strict=True), 1):
        if sample.defect == "malformed-json":  # placed by column alone in a batch, by line and column in the DLQ
            assert by_line[line][0]["message"].split(" at ")[0] == failure.reasons[0]["message"].split(" at ")[0]
        else:
            assert by_line[line] == failure.reasons, sample.defect


def test_a_signature_is_remembered_only_until_its_timestamp_goes_stale(tmp_path: Path) -> None:
    secret = tmp_path / "hmac"
    secret.write_bytes(SECRET)
    now = [1_000_000.0]
    signatures = Signatures(secret, window_s=300, clock=lambda: now[0])
    for second in range(100):
        stamp = str(int(now[0]) + second)
        assert signatures.refusal(stamp, sign(SECRET, stamp, "POST", "/tracks", b"{}"), "POST", "/tracks",
                                  b"{}") is None
    stamp = str(int(now[0]))
    again = signatures.refusal(stamp, sign(SECRET, stamp, "POST", "/tracks", b"{}"), "POST", "/tracks", b"{}")
    assert again is not None and again.status == 403 and "replayed" in again.message
    now[0] += 301
    stale = signatures.refusal(stamp, sign(SECRET, stamp, "POST", "/tracks", b"{}"), "POST", "/tracks", b"{}")
    assert stale is not None and "stale" in stale.message
    now[0] += 100
    stamp = str(int(now[0]))
    assert signatures.refusal(stamp, sign(SECRET, stamp, "POST", "/tracks", b""), "POST", "/tracks", b"") is None
    assert len(signatures._seen) == 1  # the 100 earlier ones went stale and were forgotten: memory stays bounded
