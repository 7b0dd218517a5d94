"""`kafka | normalize | mongo` as three processes on real Kafka and FerretDB: exact results, crashes, replays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streams.catalog.samples import expected_documents, samples, track
from streams.records import ERROR_HEADER, ORIGIN_OFFSET_HEADER, ORIGIN_TOPIC_HEADER
from streams.runtime.metrics import metric_sum
from tests.integration.pipeline import (
    Pipeline,
    assert_store_matches,
    dead_letter_reasons,
    produce,
    read_topic,
    running,
)
from tests.integration.processes import wait_for

RECORDS = 20_000


@pytest.fixture
def pipeline(kafka_bootstrap: str, mongo_uri: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, mongo_uri, tmp_path)
    yield p
    p.close()


def _feed(pipeline: Pipeline, count: int = RECORDS) -> list:
    items = samples(count, invalid_ratio=0.05, seed=7)
    produce(pipeline.bootstrap, pipeline.raw_topic, [(s.key, s.value, None) for s in items])
    return items


def test_exactly_the_valid_records_reach_the_store_and_every_invalid_one_the_dlq(pipeline: Pipeline) -> None:
    items = _feed(pipeline)
    expected = expected_documents(items)
    invalid = {s.key: s for s in items if not s.valid}
    assert len(invalid) == RECORDS // 20

    with running(pipeline.source(), pipeline.normalize(), pipeline.sink()) as procs:
        pipeline.wait_until_stored(len(expected), 300, *procs)
        wait_for(lambda: len(pipeline.dead_letters()) >= len(invalid), 60, "dead letters", *procs)
        sink_metrics = procs[2].metrics()

    assert_store_matches(pipeline, expected)
    letters = pipeline.dead_letters()
    reasons = dead_letter_reasons(letters)
    assert reasons.keys() == invalid.keys()
    for key, sample in invalid.items():
        fields = {reason["field"] for reason in reasons[key]}
        assert sample.expected_field in fields, (sample.defect, reasons[key])
    for key, value, headers in letters:
        assert value == invalid[key].value
        assert headers[ERROR_HEADER] == (b"malformed-json" if invalid[key].defect == "malformed-json" else b"invalid")
        assert headers[ORIGIN_TOPIC_HEADER] == f"{pipeline.stream}.src".encode()
        assert int(headers[ORIGIN_OFFSET_HEADER]) >= 0
    # Nothing else anywhere: the processor emitted exactly the valid records, the sink rejected none.
    assert len(read_topic(pipeline.bootstrap, f"{pipeline.stream}.normalize")) == len(expected)
    assert read_topic(pipeline.bootstrap, f"{pipeline.stream}.mongo.dlq") == []
    assert f'tuneflow_records_in_total{{app="mongo",instance="0",stream="{pipeline.stream}"}} {len(expected)}.0' \
        in sink_metrics


@pytest.mark.parametrize("victim", ["mongo", "normalize"])
def test_kill_9_mid_run_then_restart_gives_the_clean_result(pipeline: Pipeline, victim: str) -> None:
    items = _feed(pipeline)
    expected = expected_documents(items)
    source, processor, sink = pipeline.source(), pipeline.normalize("--batch-size", "200"), pipeline.sink()
    with running(source, processor, sink):
        target = sink if victim == "mongo" else processor
        pipeline.wait_until_stored(3000, 120, source, processor, sink)
        assert pipeline.visible_count() < len(expected), "the run finished before the kill; nothing was tested"
        target.kill9()
        target.start()
        pipeline.wait_until_stored(len(expected), 300, source, processor, sink)
        wait_for(lambda: len(dead_letter_reasons(pipeline.dead_letters())) >= RECORDS // 20, 60, "dead letters")
    assert_store_matches(pipeline, expected)
    # A crashed processor may re-emit (at-least-once); the DLQ may hold a record twice, never miss one.
    assert len(dead_letter_reasons(pipeline.dead_letters())) == RECORDS // 20


def test_replaying_the_whole_input_changes_nothing(pipeline: Pipeline) -> None:
    items = _feed(pipeline, 5000)
    expected = expected_documents(items)
    with running(pipeline.source(), pipeline.normalize(), pipeline.sink()) as procs:
        pipeline.wait_until_stored(len(expected), 180, *procs)
        before = {d["_id"]: d for d in pipeline.collection.find()}
        # A second source with a fresh consumer group reads the raw topic again from the start.
        with running(pipeline.source(group=f"{pipeline.stream}-replay")) as (replay,):
            wait_for(lambda: metric_sum(replay.metrics(), "tuneflow_records_out_total") >= len(items), 120,
                     "replay fully re-sent", replay)
        wait_for(lambda: metric_sum(procs[2].metrics(), "tuneflow_records_in_total") >= 2 * len(expected), 180,
                 "sink saw the replay", *procs)
    after = {d["_id"]: d for d in pipeline.collection.find()}
    assert after == before
    assert_store_matches(pipeline, expected)


def test_out_of_order_versions_newest_wins(pipeline: Pipeline) -> None:
    import random

    rng = random.Random(3)
    versions = {track_id: [track(track_id, rng, version=v) for v in (1, 2, 3, 4)] for track_id in range(1, 301)}
    # Batch 1 has v3, v1, v4, v2 of each track interleaved; a later batch carries v2 and v1 again.
    first = [orjson.dumps(versions[t][v]) for v in (2, 0, 3, 1) for t in versions]
    late = [orjson.dumps(versions[t][v]) for v in (1, 0) for t in versions]
    produce(pipeline.bootstrap, pipeline.raw_topic, [(str(orjson.loads(v)["_id"]).encode(), v, None) for v in first])
    with running(pipeline.source(), pipeline.normalize(), pipeline.sink()) as procs:
        pipeline.wait_until_stored(300, 120, *procs)
        wait_for(lambda: metric_sum(procs[2].metrics(), "tuneflow_records_in_total") >= len(first), 120,
                 "sink saw the first batch", *procs)
        produce(pipeline.bootstrap, pipeline.raw_topic,
                [(str(orjson.loads(v)["_id"]).encode(), v, None) for v in late])
        wait_for(lambda: metric_sum(procs[2].metrics(), "tuneflow_records_in_total") >= len(first) + len(late), 120,
                 "sink saw the late batch", *procs)
    stored = pipeline.store_documents()
    assert {t: d["updated_at"] for t, d in stored.items()} == {
        t: v[3]["updated_at"] for t, v in versions.items()
    }
