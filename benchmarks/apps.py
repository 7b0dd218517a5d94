"""tuneflow's own apps under load, each as its own OS process (`tuneflow app run`), as a deployer runs them.

Input topics are filled before an app starts. An app that writes a topic (the normalize hop) is timed by the
CreateTime stamps of the records it wrote, so nothing scrapes it while it runs; the others by their own /metrics,
from the first record read to the last written (the group join is not counted in either). Peak RSS comes from
/proc/<pid>/status (VmHWM) once the run is over.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pymongo import MongoClient

from benchmarks.ceilings import (
    EXISTING_KEYS_CEILING,
    PYDANTIC_CEILING,
    UPDATE_DOCS,
    VALIDATE_SERIALIZE_CEILING,
    existing_keys_ceiling,
    pydantic_ceiling,
    validate_serialize_ceiling,
)
from benchmarks.harness import REPEATS, measure, peak_rss_mb
from benchmarks.peers.runner import FaustHop
from benchmarks.records import track_documents
from processors.normalize import Normalize, NormalizeOptions
from streams.catalog.models import TrackDocument, timestamp_version
from streams.records import Record
from streams.runtime.metrics import metric_sum
from streams.runtime.runner import RunSpec
from streams.serde import to_plain
from streams.stores.base import DELETED_FIELD, VERSION_FIELD
from tests.integration.pipeline import produce
from tests.integration.processes import AppProcess

HOP_RECORDS = int(os.environ.get("TUNEFLOW_BENCH_HOP_RECORDS", "100000"))
SINK_NEW_DOCS = int(os.environ.get("TUNEFLOW_BENCH_STORE_DOCS", "20000"))
BATCH = RunSpec("", "").batch_size  # the runner's default, which the ceilings use too
POLL_S = 0.05
CEILING_RECORDS = 30_000
RSS_LIMIT_MB = 250
SHAPE_KEYS = ("replacements_per_command", "commands_in_flight")
# The sink's update rate before FerretDB's collections had their `_id` index (one command of ten at a time).
BEFORE_INDEX_UPDATES = {"report": "20261126T173539Z", "median": 88.8}


def _timed_run(process: AppProcess, records: int, done_metric: str, timeout_s: float) -> dict[str, Any]:
    """Start the app, wait for its first record in and `records` out; stop it; rate, seconds and peak RSS."""
    process.start()
    assert process.proc is not None
    first_in: float | None = None
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if process.proc.poll() is not None:
                raise RuntimeError(f"{process.args[0]} exited with {process.proc.returncode}:\n{process.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{process.args[0]} did not finish in {timeout_s}s:\n{process.log_tail()}")
            try:
                text = process.metrics()
            except OSError:
                time.sleep(POLL_S)
                continue
            now = time.perf_counter()
            if first_in is None and metric_sum(text, "tuneflow_records_in_total") > 0:
                first_in = now
            if metric_sum(text, done_metric) >= records:
                assert first_in is not None
                seconds = now - first_in
                rss = peak_rss_mb(process.proc.pid)
                break
            time.sleep(POLL_S)
    finally:
        process.stop()
    return {"items": records, "seconds": round(seconds, 3), "median": round(records / seconds, 1),
            "unit": "records/s", "peak_rss_mb": rss}


def _written_run(process: AppProcess | list[AppProcess], bootstrap: str, topic: str, records: int,
                 timeout_s: float, partitions: int = 1) -> dict[str, Any]:
    """Start the processes that write `topic`; their rate comes from the CreateTime stamps the producer put on the
    records they wrote, so nothing scrapes an app while it runs (a scrape takes the GIL).

    Rate: the records written after the first batch, over the time from the first record written to the last.
    """
    processes = process if isinstance(process, list) else [process]
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"tf-bench-{uuid.uuid4().hex[:8]}",
                       "enable.auto.commit": False, "enable.partition.eof": False})
    parts = [TopicPartition(topic, p) for p in range(partitions)]

    def written() -> list[int]:
        return [reader.get_watermark_offsets(part, timeout=10)[1] for part in parts]

    try:
        starts = written()
        for each in processes:
            each.start()
        deadline = time.monotonic() + timeout_s
        try:
            while sum(written()) < sum(starts) + records:
                for each in processes:
                    assert each.proc is not None
                    if each.proc.poll() is not None:
                        raise RuntimeError(f"{each.args[0]} exited with {each.proc.returncode}:\n{each.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{processes[0].args[0]} did not finish in {timeout_s}s:\n"
                                       f"{processes[0].log_tail()}")
                time.sleep(0.2)
            rss = max(peak_rss_mb(each.proc.pid) for each in processes if each.proc is not None)
        finally:
            for each in processes:
                each.stop()
        ends = written()
        stamps = _create_times(reader, [TopicPartition(topic, p, start) for p, start in enumerate(starts)],
                               [end - start for start, end in zip(starts, ends, strict=True)])
    finally:
        reader.close()
    seconds = (max(stamps) - min(stamps)) / 1000
    return {"items": records, "seconds": round(seconds, 3), "median": round((records - BATCH) / seconds, 1),
            "unit": "records/s", "peak_rss_mb": rss, "timed_by": "output CreateTime"}


def _create_times(reader: Consumer, starts: list[TopicPartition], counts: list[int]) -> list[int]:
    reader.assign(starts)
    ends = {part.partition: part.offset + count for part, count in zip(starts, counts, strict=True)}
    stamps: list[int] = []
    while len(stamps) < sum(counts):
        for message in reader.consume(10_000, 5):
            if message.error() is None and message.offset() < ends[message.partition()]:
                stamps.append(message.timestamp()[1])
    return stamps


class _Topics:
    """The benchmark's topics: created and filled in one place, all deleted at the end."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        self._names: list[str] = []

    def create(self, *names: str, partitions: int = 1) -> None:
        for future in self._admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
            future.result(30)
        self._names.extend(names)

    def fill(self, name: str, documents: list[dict[str, Any]], partitions: int = 1) -> None:
        self.create(name, partitions=partitions)
        produce(self.bootstrap, name, [(str(d["_id"]).encode(), orjson.dumps(d), None) for d in documents])

    def delete_all(self, *also: str) -> None:
        """Every topic created here, and `also` (topics the apps may have created, such as their DLQs)."""
        for future in self._admin.delete_topics([*self._names, *also]).values():
            with contextlib.suppress(KafkaException):  # a DLQ topic that was never created
                future.result(30)


def _app(name: str, stream: str, workdir: Path, *args: str) -> AppProcess:
    return AppProcess([name, "--stream", stream, *args], workdir, f"{stream}-{name}")


def _report(name: str, result: dict[str, Any], ceiling: dict[str, Any] | None, target: float | None) -> dict[str, Any]:
    entry = {"name": name, **result, "rss_limit_mb": RSS_LIMIT_MB,
             "rss_within_limit": result["peak_rss_mb"] <= RSS_LIMIT_MB}
    if ceiling is not None:
        ratio = round(result["median"] / ceiling["median"], 3)
        entry |= {"ceiling": ceiling["name"], "ceiling_median": ceiling["median"], "ratio": ratio}
        if target is not None:
            entry |= {"target_ratio": target, "meets_target": ratio >= target}
    print(f"  {name:<48} {result['median']:>12,.0f} records/s  rss {result['peak_rss_mb']} MB"
          + (f"  ratio {entry['ratio']:.2f} of {ceiling['name']}" if ceiling else ""), flush=True)
    return entry


def _ceiling(ceilings: dict[str, list[dict[str, Any]]], group: str, name: str) -> dict[str, Any]:
    return next(c for c in ceilings[group] if c["name"] == name)


def run_all(env: dict[str, str], ceilings: dict[str, list[dict[str, Any]]], workdir: Path) -> list[dict[str, Any]]:
    print("apps:", flush=True)
    bootstrap, mongo_uri = env["TUNEFLOW_KAFKA_BOOTSTRAP"], env["TUNEFLOW_MONGO_URI"]
    topics = _Topics(bootstrap)
    stream = f"tfbench{uuid.uuid4().hex[:8]}"
    raw, src, norm = f"{stream}_raw", f"{stream}.kafka", f"{stream}.normalize"
    documents = track_documents(HOP_RECORDS)
    topics.create(src, norm)
    topics.fill(raw, documents)
    results: list[dict[str, Any]] = []
    try:
        source = _timed_run(_app("kafka", stream, workdir, "--", f"--topic={raw}"), HOP_RECORDS,
                            "tuneflow_records_out_total", 600)
        results.append(_report("kafka source (topic to topic)", source,
                               _ceiling(ceilings, "kafka", "kafka consume (batch 10k)"), None))
        results.append(_normalize_hop(bootstrap, stream, src, documents, topics, workdir))
        results.append(_scaled_hop(bootstrap, stream, documents, topics, workdir))
        results.extend(_sink_runs(stream, topics, mongo_uri, ceilings, workdir))
    finally:
        topics.delete_all(*(f"{stream}{suffix}.{app}.dlq" for suffix in ("", "n", "u", "x")
                            for app in ("kafka", "normalize", "mongo")),
                          *(f"{stream}-faust{repeat}-__assignor-__leader" for repeat in range(REPEATS)))
    return results


def _normalize_hop(bootstrap: str, stream: str, source_topic: str, documents: list[dict[str, Any]],
                   topics: _Topics, workdir: Path) -> dict[str, Any]:
    """Runs interleaved with the ceilings and with the faust-streaming peer on the same records, so all of them
    see the same machine.

    The hop's work is validate + serialize: its ceiling does exactly that on the same records. The validate-only
    ceiling and `normalize`'s own `process()` in memory (no Kafka) are measured beside it; together they tell
    the app's cost from the runtime's.
    """
    encoded = [orjson.dumps(d) for d in documents[:CEILING_RECORDS]]
    faust_topic = f"{stream}_faust"
    topics.create(faust_topic)
    fair, validate_only, alone, runs, faust_runs = [], [], [], [], []

    def ceilings_now() -> None:
        fair.append(validate_serialize_ceiling(encoded))
        validate_only.append(pydantic_ceiling(encoded))
        alone.append(_normalize_alone(encoded))

    ceilings_now()
    for repeat in range(REPEATS):
        process = _app("normalize", stream, workdir, "--input", source_topic, "--group", f"{stream}-hop{repeat}")
        runs.append(_written_run(process, bootstrap, f"{stream}.normalize", len(documents), 600))
        peer = FaustHop(bootstrap, source_topic, faust_topic, f"{stream}-faust{repeat}", workdir)
        faust_runs.append(_written_run(peer, bootstrap, faust_topic, len(documents), 900))
        print(f"    {'faust-streaming agent, same hop':<46} {faust_runs[-1]['median']:>12,.0f} records/s", flush=True)
        ceilings_now()
    hop = _median_run(runs)
    entry = _report("normalize hop kafka to kafka (1 process)", hop, _around(VALIDATE_SERIALIZE_CEILING, fair), 0.80)
    entry["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    for key, name, measured in (("validate_only", PYDANTIC_CEILING, validate_only),
                                ("normalize_alone", NORMALIZE_ALONE, alone)):
        around = _around(name, measured)
        entry[key] = around | {"hop_ratio": round(hop["median"] / around["median"], 3)}
        print(f"    {name:<46} {around['median']:>12,.0f} records/s  hop at {entry[key]['hop_ratio']:.2f} of it",
              flush=True)
    faust = _median_run(faust_runs)
    entry["faust"] = {"name": "faust-streaming agent, same hop (1 worker)", **faust,
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in faust_runs),
                      "tuneflow_times_faust": round(hop["median"] / faust["median"], 2),
                      "target_times": 1.0, "meets_target": hop["median"] >= faust["median"]}
    print(f"    tuneflow's hop at {entry['faust']['tuneflow_times_faust']:.2f}x faust-streaming's", flush=True)
    return entry


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda run: run["median"])[len(runs) // 2] | {"runs": [r["median"] for r in runs]}


def _scaled_hop(bootstrap: str, stream: str, documents: list[dict[str, Any]], topics: _Topics,
                workdir: Path) -> dict[str, Any]:
    """The hop with `deployer.normalize.count=1` and `=2` on the same two-partition topics, alternating: how it
    scales on a 2-core machine whose cores the broker shares."""
    scaled = f"{stream}x"
    topics.fill(f"{scaled}_raw", documents, partitions=2)
    topics.create(f"{scaled}.normalize", partitions=2)
    by_count: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for repeat in range(REPEATS):
        for count in (1, 2):
            group = f"{scaled}-c{count}r{repeat}"
            processes = [_app("normalize", scaled, workdir, "--input", f"{scaled}_raw", "--group", group,
                              "--instance", str(index)) for index in range(count)]
            by_count[count].append(_written_run(processes, bootstrap, f"{scaled}.normalize", len(documents), 600,
                                                partitions=2))
    one, two = _median_run(by_count[1]), _median_run(by_count[2])
    entry = {"name": "normalize hop, deployer.normalize.count=2 (2 partitions)", **two,
             "count_1": one, "speedup": round(two["median"] / one["median"], 2)}
    print(f"  {entry['name']:<48} {two['median']:>12,.0f} records/s  {entry['speedup']:.2f}x count=1 "
          f"({one['median']:,.0f}/s)", flush=True)
    return entry


NORMALIZE_ALONE = "normalize process() in memory (1 core)"


def _normalize_alone(encoded: list[bytes]) -> dict[str, Any]:
    """The app's own work on batches of the runner's size, outputs dropped batch by batch as the runner does."""
    app = Normalize(NormalizeOptions(), context=None)  # type: ignore[arg-type]  # process() never reads it
    records = [Record(str(i).encode(), value) for i, value in enumerate(encoded)]
    batches = [records[i:i + BATCH] for i in range(0, len(records), BATCH)]

    def run() -> None:
        for batch in batches:
            app.process(batch)

    return measure(NORMALIZE_ALONE, len(records), run)


def _around(name: str, measured: list[dict[str, Any]]) -> dict[str, Any]:
    """One ceiling from the measurements taken around an app's runs: their median."""
    rates = [m["median"] for m in measured]
    return {"name": name, "median": round(statistics.median(rates), 1), "runs": rates}


def _sink_runs(stream: str, topics: _Topics, mongo_uri: str, ceilings: dict[str, list[dict[str, Any]]],
               workdir: Path) -> list[dict[str, Any]]:
    """The mongo sink on new keys, then on newer versions of keys already stored, against the same-run ceilings."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    new_db, update_db = f"tf_bench_{uuid.uuid4().hex[:8]}", f"tf_bench_{uuid.uuid4().hex[:8]}"
    updates_topic, new_topic = f"{stream}_updates", f"{stream}_new"
    results = []
    try:
        # New keys: SINK_NEW_DOCS normalized documents, the collection size of the insert ceiling.
        topics.fill(new_topic, [to_plain(TrackDocument.model_validate(d))
                                for d in track_documents(SINK_NEW_DOCS, seed=21)])
        sink = _app("mongo", f"{stream}n", workdir, "--label", "mongo", "--input", new_topic, "--",
                    f"--uri={mongo_uri}", f"--database={new_db}")
        new_keys = _timed_run(sink, SINK_NEW_DOCS, "tuneflow_records_out_total", 1800)
        if client[new_db]["tracks"].count_documents({}) != SINK_NEW_DOCS:
            raise RuntimeError("the sink run did not store every new document")
        results.append(_report(f"mongo sink, new keys (batch {BATCH})", new_keys,
                               _ceiling(ceilings, "store", "store bulk_write upsert, new keys"), 0.85))
        results[-1]["insert_many_ceiling"] = _ceiling(ceilings, "store", f"store insert_many (batch {BATCH})")["median"]

        # Newer versions of UPDATE_DOCS stored keys: the collection size the existing-keys ceiling runs on.
        base = [to_plain(TrackDocument.model_validate(d)) for d in track_documents(UPDATE_DOCS, seed=22)]
        client[update_db]["tracks"].insert_many([
            d | {VERSION_FIELD: timestamp_version(TrackDocument.model_validate(d).updated_at), DELETED_FIELD: False}
            for d in base
        ])
        newer = [d | {"title": "updated", "updated_at": "2025-01-01T00:00:00Z"} for d in base]
        topics.fill(updates_topic, newer)
        # The ceiling runs just before and after the sink, on a collection of the same size, same machine state.
        ceilings_seen = [existing_keys_ceiling(mongo_uri, track_documents(UPDATE_DOCS, seed=23))]
        sink = _app("mongo", f"{stream}u", workdir, "--label", "mongo", "--input", updates_topic, "--",
                    f"--uri={mongo_uri}", f"--database={update_db}")
        updated = _timed_run(sink, UPDATE_DOCS, "tuneflow_records_out_total", 1800)
        ceilings_seen.append(existing_keys_ceiling(mongo_uri, track_documents(UPDATE_DOCS, seed=24)))
        stored_titles = {d["title"] for d in client[update_db]["tracks"].find({}, {"title": 1})}
        if stored_titles != {"updated"}:
            raise RuntimeError(f"the sink run left other titles in the store: {sorted(stored_titles)[:5]}")
        results.append(_report(f"mongo sink, newer versions of stored keys (batch {BATCH})", updated,
                               _around(EXISTING_KEYS_CEILING, ceilings_seen), 0.85))
        results[-1] |= {"shape": {k: v for k, v in ceilings_seen[0].items() if k in SHAPE_KEYS},
                        "before_index": BEFORE_INDEX_UPDATES,
                        "times_before_index": round(updated["median"] / BEFORE_INDEX_UPDATES["median"], 2),
                        "target_times_before_index": 3.0}
    finally:
        for name in (new_db, update_db):
            client.drop_database(name)
        client.close()
    return results
