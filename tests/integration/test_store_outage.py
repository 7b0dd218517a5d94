"""The document store goes away under a running stream, or is not there when the sink starts: nothing is lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.catalog.samples import expected_documents, samples
from streams.runtime.metrics import metric_sum
from tests.integration.ferretdb_server import FerretDBServer, ferretdb_on_pg
from tests.integration.pipeline import (
    Pipeline,
    assert_store_matches,
    produce,
    running,
)
from tests.integration.processes import AppProcess, wait_for

OUTAGE_S = 20


@pytest.fixture
def ferretdb(postgres_url: str) -> Iterator[FerretDBServer]:
    with ferretdb_on_pg(postgres_url) as server:
        yield server


@pytest.fixture
def pipeline(kafka_bootstrap: str, ferretdb: FerretDBServer, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, ferretdb.uri, tmp_path)
    yield p
    if not ferretdb.running:
        ferretdb.start()
    p.close()


def _ready(process: AppProcess) -> bool:
    return "tuneflow_app_ready{" in (text := process.metrics()) and metric_sum(text, "tuneflow_app_ready") == 1


def _hold_outage(sink: AppProcess, seconds: float) -> None:
    """Through the outage the sink stays alive and reports itself not ready."""
    deadline = time.monotonic() + seconds
    seen_not_ready = False
    while time.monotonic() < deadline:
        assert sink.proc is not None and sink.proc.poll() is None, f"the sink exited:\n{sink.log_tail()}"
        seen_not_ready = seen_not_ready or not _ready(sink)
        time.sleep(0.5)
    assert seen_not_ready, "the sink said it was ready while its store was down"


def test_store_stopped_for_20s_mid_run_loses_nothing(pipeline: Pipeline, ferretdb: FerretDBServer) -> None:
    items = samples(20_000, invalid_ratio=0.05, seed=11)
    first, second = items[:10_000], items[10_000:]
    expected_first = expected_documents(first)
    with running(pipeline.source(), pipeline.normalize(), pipeline.sink()) as procs:
        sink = procs[2]
        produce(pipeline.bootstrap, pipeline.raw_topic, [(s.key, s.value, None) for s in first])
        pipeline.wait_until_stored(len(expected_first), 180, *procs)

        ferretdb.stop()
        # Records keep arriving while the store is down: the sink must hold them, not drop or dead-letter them.
        produce(pipeline.bootstrap, pipeline.raw_topic, [(s.key, s.value, None) for s in second])
        _hold_outage(sink, OUTAGE_S)
        ferretdb.start()

        expected = expected_documents(items)
        pipeline.wait_until_stored(len(expected), 180, *procs)
        wait_for(lambda: _ready(sink), 30, "sink ready again", sink)
        metrics = sink.metrics()

    assert_store_matches(pipeline, expected)
    assert metric_sum(metrics, "tuneflow_retries_total", app="mongo", operation="write") >= 1
    assert metric_sum(metrics, "tuneflow_dlq_records_total", app="mongo") == 0
    assert metric_sum(metrics, "tuneflow_records_out_total", app="mongo") == metric_sum(
        metrics, "tuneflow_records_in_total", app="mongo")
    assert pipeline.dead_letters_of("mongo") == []


def test_sink_started_while_the_store_is_down_waits_for_it(pipeline: Pipeline, ferretdb: FerretDBServer) -> None:
    items = samples(3000, invalid_ratio=0.0, seed=5)
    produce(pipeline.bootstrap, pipeline.raw_topic, [(s.key, s.value, None) for s in items])
    ferretdb.stop()
    with running(pipeline.source(), pipeline.normalize(), pipeline.sink()) as procs:
        sink = procs[2]
        wait_for(lambda: "tuneflow_app_ready" in sink.metrics(), 60, "sink serving metrics", sink)
        _hold_outage(sink, 8)
        ferretdb.start()
        expected = expected_documents(items)
        pipeline.wait_until_stored(len(expected), 180, *procs)
        metrics = sink.metrics()
    assert_store_matches(pipeline, expected)
    assert metric_sum(metrics, "tuneflow_retries_total", app="mongo", operation="setup") >= 1
    # The indexes the sink creates at setup are there.
    indexed = {next(iter(spec["key"])) for spec in pipeline.collection.list_indexes()}
    assert {"isrc", "album.album_id", "artists.artist_id"} <= indexed
