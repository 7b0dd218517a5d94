"""The same `kafka | normalize | mongo` stream in one process: the embedded deployer, memory binder, embedded store."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest

from streams.binders.memory import MemoryBinder
from streams.catalog.samples import expected_documents, samples
from streams.platform.run import EmbeddedRun
from streams.records import ERROR_REASONS_HEADER, Record
from streams.registry import Registry
from streams.serde import business_fields, content_checksum
from streams.state import open_state
from streams.stores.embedded import EmbeddedStore


def test_memory_stream_stores_exactly_the_valid_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The input of the three-process Kafka test (tests/integration/test_pipeline.py), checked against the same
    # expected set: the memory binder, the embedded deployer and the embedded store must give identical content.
    monkeypatch.setenv("TUNEFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("TUNEFLOW_DB_URL", raising=False)
    items = samples(20_000, invalid_ratio=0.05, seed=7)
    binder = MemoryBinder()
    binder.ensure_topics(["raw"], partitions=3)
    out = binder.output()
    out.send("raw", [Record(key=s.key, value=s.value) for s in items])
    out.flush()

    store_uri = f"embedded://{tmp_path / 'store'}"
    run = EmbeddedRun(name="s", definition=f"kafka --topic=raw | normalize | mongo --uri={store_uri}", binder=binder,
                      registry=Registry(open_state()), dlq_dir=tmp_path / "dlq")
    run.start()
    stop, valid = threading.Event(), sum(s.valid for s in items)

    def all_written() -> None:
        if run.deployer.totals()[-1].records_out >= valid:
            stop.set()

    deadline = threading.Timer(60, stop.set)
    deadline.start()
    result = run.wait(stop, on_tick=all_written)
    deadline.cancel()
    assert [(t.label, t.records_in, t.records_out, t.dead_letters) for t in result.totals] == [
        ("kafka", len(items), len(items), 0), ("normalize", len(items), valid, len(items) - valid),
        ("mongo", valid, valid, 0)]

    expected = expected_documents(items)
    store = EmbeddedStore.from_uri(store_uri)
    stored = [business_fields(d) for page in store.scan("tracks") for d in page]
    store.close()
    assert len(stored) == len(expected)
    assert content_checksum(stored) == content_checksum(expected.values())

    letters = [orjson.loads(line) for line in result.dead_letter_files["s.normalize.dlq"].read_bytes().splitlines()]
    assert sorted(letter["key"].encode() for letter in letters) == sorted(s.key for s in items if not s.valid)
    assert all(letter["headers"][ERROR_REASONS_HEADER].startswith("[{") for letter in letters)
