"""The `http` source while its Kafka broker is stopped and started again: a scratch broker of the test's own.

Writers keep sending through the outage. While Kafka is away requests get 503 with Retry-After, /readyz says 503 and
the process's memory stays bounded; once the broker is back the source accepts again by itself, and every record
that was answered 202 is in Kafka.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from streams.catalog.samples import samples
from tests.http_client import Caller
from tests.integration.kafka_server import KafkaServer, scratch_kafka
from tests.integration.pipeline import create_topic, read_topic
from tests.integration.processes import AppProcess, free_port, wait_for
from tests.integration.services import unique_name

TOKEN = "outage-writer-" + "6b1d93e0"
WRITERS = 4
LINES = 50  # per batch request
RSS_BOUND_MB = 250
RSS_GROWTH_MB = 50  # what the outage may add to the RSS the source had before it
RETRY_AFTER_S = 2


@dataclass
class Tally:
    """What the writers were told, request by request."""

    acknowledged: set[bytes] = field(default_factory=set)
    statuses: list[tuple[float, int]] = field(default_factory=list)
    retry_after: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def _readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def broker() -> Iterator[KafkaServer]:
    with scratch_kafka() as server:
        yield server


def test_kafka_stopped_mid_run_gives_503s_bounded_memory_and_recovers_without_losing_an_acknowledged_record(
        broker: KafkaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFLOW_KAFKA_BOOTSTRAP", broker.bootstrap)
    stream, port = unique_name("tfo"), free_port()
    topic = f"{stream}.http"
    create_topic(broker.bootstrap, topic, 3)
    (tmp_path / "tokens").write_text(TOKEN + "\n")
    source = AppProcess(["http", "--stream", stream, "--", f"--port={port}", f"--token-file={tmp_path / 'tokens'}",
                         "--ack-timeout-s=3", f"--retry-after-s={RETRY_AFTER_S}"], tmp_path, "http").start()
    tally, stop = Tally(), threading.Event()
    items = samples(WRITERS * 400 * LINES, invalid_ratio=0.0, seed=61)

    def write(writer: int) -> None:
        caller = Caller(port, TOKEN)
        mine = items[writer::WRITERS]
        for start in range(0, len(mine), LINES):
            if stop.is_set():
                break
            batch = mine[start:start + LINES]
            try:
                answer = caller.request("POST", "/tracks/batch", b"\n".join(s.value for s in batch),
                                        "application/x-ndjson")
            except (OSError, http.client.HTTPException):  # a refusal that closed the connection mid-send
                caller.close()
                caller = Caller(port, TOKEN)
                continue
            with tally.lock:
                tally.statuses.append((time.monotonic(), answer.status))
                if answer.status == 202:
                    tally.acknowledged.update(s.key for s in batch)
                elif answer.status == 503:
                    tally.retry_after.add(answer.headers.get("retry-after", ""))
            if answer.status == 503:
                time.sleep(0.05)  # a polite writer would wait Retry-After; these keep the pressure on
        caller.close()

    writers = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    try:
        source.wait_ready()
        for writer in writers:
            writer.start()
        wait_for(lambda: len(tally.acknowledged) >= 2000, 30, "records acknowledged before the outage", source)

        assert source.proc is not None
        rss_before = _rss_mb(source.proc.pid)
        broker.stop()
        stopped_at = time.monotonic()
        rss_during = [_rss_mb(source.proc.pid)]

        def unready() -> bool:  # the source's own /readyz and its instance endpoint's, which deployers probe
            rss_during.append(_rss_mb(source.proc.pid))  # type: ignore[union-attr]
            return _readyz(port) == 503 and _readyz(source.port) == 503

        wait_for(unready, 20, "/readyz to say 503 once Kafka is gone", source)
        detected_s = time.monotonic() - stopped_at
        refused_from = len(tally.statuses)
        wait_for(lambda: sum(s == 503 for _, s in tally.statuses[refused_from:]) >= 50, 20,
                 "writers refused while Kafka is gone", source)
        for _ in range(10):
            rss_during.append(_rss_mb(source.proc.pid))
            time.sleep(0.1)
        assert _readyz(port) == 503

        broker.start()
        restarted_at = time.monotonic()
        wait_for(lambda: _readyz(port) == 200, 60, "the source to recover by itself", source)
        wait_for(lambda: any(at > restarted_at and status == 202 for at, status in tally.statuses), 30,
                 "records acknowledged after the outage", source)
    finally:
        stop.set()
        for writer in writers:
            if writer.is_alive():
                writer.join(30)
        source.stop()

    statuses = {status for _, status in tally.statuses}
    assert statuses <= {202, 503}, statuses
    assert tally.retry_after == {str(RETRY_AFTER_S)}
    assert max(rss_during) < min(RSS_BOUND_MB, rss_before + RSS_GROWTH_MB), (rss_before, rss_during)
    produced = {key for key, _, _ in read_topic(broker.bootstrap, topic)}
    lost = tally.acknowledged - produced
    assert not lost, f"{len(lost)} acknowledged records are not in Kafka, e.g. {sorted(lost)[:5]}"
    assert b"Traceback" not in source.log_path.read_bytes(), source.log_tail()
    print(f"outage seen by /readyz after {detected_s:.1f}s; {len(tally.acknowledged)} acknowledged, "
          f"{sum(s == 503 for _, s in tally.statuses)} requests refused; RSS {rss_before:.0f} MB before, "
          f"{max(rss_during):.0f} MB at most during")
