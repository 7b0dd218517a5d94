"""The same `kafka | normalize | mongo` stream in one process on the memory binder and the embedded store."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from streams.binders.memory import MemoryBinder
from streams.catalog.samples import expected_documents, samples
from streams.records import ERROR_REASONS_HEADER, Record
from streams.runtime.launch import build_instance
from streams.runtime.runner import RunSpec
from streams.serde import business_fields, content_checksum
from streams.stores.embedded import EmbeddedStore


def test_memory_stream_stores_exactly_the_valid_records(tmp_path: Path) -> None:
    # The input of the three-process Kafka test (tests/integration/test_pipeline.py), checked against the same
    # expected set: the memory binder and embedded store must give the identical content.
    items = samples(20_000, invalid_ratio=0.05, seed=7)
    binder = MemoryBinder()
    binder.ensure_topics(["raw"], partitions=3)
    out = binder.output()
    out.send("raw", [Record(key=s.key, value=s.value) for s in items])
    out.flush()

    store_uri = f"embedded://{tmp_path / 'store'}"
    specs = [
        ("kafka", {"topic": "raw"}, RunSpec(stream="s", label="kafka", output="s.kafka")),
        ("normalize", {}, RunSpec(stream="s", label="normalize", inputs=["s.kafka"], output="s.normalize")),
        ("mongo", {"uri": store_uri}, RunSpec(stream="s", label="mongo", inputs=["s.normalize"])),
    ]
    instances = [build_instance(name, None, options, spec, binder) for name, options, spec in specs]
    threads = [threading.Thread(target=i.runner.run, daemon=True) for i in instances]
    for thread in threads:
        thread.start()
    sink_metrics = instances[2].runner.metrics
    expected = expected_documents(items)
    for _ in range(600):
        if sink_metrics.records_in._value.get() >= sum(s.valid for s in items):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the sink saw {sink_metrics.records_in._value.get()} records")
    for instance in instances:
        instance.runner.stop()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()

    store = EmbeddedStore.from_uri(store_uri)
    stored = [business_fields(d) for page in store.scan("tracks") for d in page]
    store.close()
    assert len(stored) == len(expected)
    assert content_checksum(stored) == content_checksum(expected.values())

    dlq = binder.input(["s.normalize.dlq"], group="check", instance="0")
    letters = dlq.poll(10_000, 1.0)
    assert sorted(r.key for r in letters) == sorted(s.key for s in items if not s.valid)
    assert all(r.headers[ERROR_REASONS_HEADER].startswith(b"[{") for r in letters)
