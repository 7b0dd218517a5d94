"""The `cdc-mysql` source's initial snapshot on the real MariaDB and Kafka: a 200,000-track catalog under a writer,
undeployed and redeployed, and a snapshot killed mid-way that resumes after its last durable chunk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.catalog.generator import generate_catalog
from streams.records import VERSION_HEADER
from streams.runtime.metrics import metric_sum
from tests.integration.cdc_replay import (
    Message,
    checksums,
    guarded_replay,
)
from tests.integration.cdc_snapshot_story import Source, snapshot_under_a_writer_converges_and_is_never_repeated
from tests.integration.pipeline import create_topic, read_topic
from tests.integration.processes import wait_for
from tests.integration.services import unique_name
from tests.integration.test_cdc_mysql import (
    Writer,
    catalog_database,
    connect,
    delivered,
    gtid_of,
    source,
    table_rows,
)


@pytest.fixture
def database() -> Iterator[str]:
    with catalog_database() as url:
        yield url


class KeyedWriter(Writer):
    """The writer, picking rows by a random value of their first key column (an index lookup, where ORDER BY RAND()
    reads a whole large table for every pick)."""

    def pick(self, cursor: Any, table: str, columns: str) -> tuple[Any, ...] | None:
        first = columns.split(",")[0].strip()
        cursor.execute(f"SELECT MIN({first}), MAX({first}) FROM {table}")
        low, high = cursor.fetchone()
        if low is None:
            return None
        cursor.execute(f"SELECT {columns} FROM {table} WHERE {first} >= %s ORDER BY {first} LIMIT 1",
                       (self.rng.randint(low, high),))
        row: tuple[Any, ...] | None = cursor.fetchone()
        return row


def snapshot_state(bootstrap: str, stream: str) -> dict[str, Any]:
    states = read_topic(bootstrap, f"{stream}.cdc.snapshot")
    return orjson.loads(states[-1][1]) if states else {}


def is_snapshot_row(message: Message) -> bool:
    return b'"op":"r"' in message[1]


# The catalog's entities (the credit and genre links, 890,000 more rows at this size, are followed in the tests above).
ENTITIES = ("artist", "album", "album_artist", "track", "genre")


def test_an_initial_snapshot_of_200000_tracks_converges_with_live_changes_and_is_never_repeated(
        database: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    generate_catalog(database, 200_000, mode="append", seed=21, chunk_size=10_000)
    stream = unique_name("tfcdcm")
    topic = f"{stream}.cdc"
    create_topic(kafka_bootstrap, topic, 3)
    snapshot = ["--snapshot=initial", "--snapshot-parallel=2", f"--tables={','.join(ENTITIES)}"]
    story = Source(
        start=lambda label: source(database, stream, tmp_path, label, *snapshot, batch=2000).start(),
        snapshot_done=lambda process: wait_for(lambda: snapshot_state(kafka_bootstrap, stream).get("done", False),
                                               120, "the snapshot read", process),
        while_away=["UPDATE genre SET name = CONCAT(name, ' ⏸') WHERE genre_id = 1",
                    "DELETE FROM album_artist ORDER BY album_id, artist_id LIMIT 1"],
        connect=connect, table_rows=table_rows, started="starting the initial snapshot at binlog")
    snapshot_under_a_writer_converges_and_is_never_repeated(  # 200,000 tracks and their entities: 266,000 rows
        database, kafka_bootstrap, topic, KeyedWriter(database, 100_000, seed=8), story, ENTITIES, 265_000)


def covered_by(state: dict[str, Any], table: str, key: dict[str, Any]) -> bool:
    """Whether saved progress says the snapshot read the row of `key` already: its part finished, or read past it."""
    bounds = state["bounds"].get(table, [])
    values = tuple(key.values())
    part = table if not bounds else f"{table}#{sum(values[0] >= bound for bound in bounds)}"
    after = state["after"].get(part)
    return part in state["finished"] or (after is not None and values <= tuple(after))


def test_a_killed_snapshot_resumes_after_its_last_durable_chunk_and_converges(database: str, kafka_bootstrap: str,
                                                                             tmp_path: Path) -> None:
    # Small chunks, each saved durably before the next counts, so the snapshot takes seconds and the kill after
    # its first 1,500 rows lands mid-way.
    generate_catalog(database, 3000, mode="append", seed=22, chunk_size=1000)
    stream = unique_name("tfcdcm")
    topic = f"{stream}.cdc"
    create_topic(kafka_bootstrap, topic, 3)
    snapshot = ["--snapshot=initial", "--snapshot-chunk=20", "--snapshot-parallel=2"]
    writer = KeyedWriter(database, 100_000, seed=9)  # until told to stop: the two snapshots see different positions
    writer.start()
    process = source(database, stream, tmp_path, "killed", *snapshot).start()
    try:
        process.wait_ready()
        wait_for(lambda: metric_sum(process.metrics(), "tuneflow_cdc_snapshot_rows_total") >= 1500, 60,
                 "the snapshot under way", process)
        process.kill9()
        state = snapshot_state(kafka_bootstrap, stream)  # its durable progress
        assert state and not state["done"] and state["finished"] + list(state["after"])
        process = source(database, stream, tmp_path, "resumed", *snapshot).start()
        process.wait_ready()
        wait_for(lambda: snapshot_state(kafka_bootstrap, stream).get("done", False), 60, "the snapshot read",
                 process)
        writer.stopping = True
        writer.join(30)
        assert writer.error is None, writer.error
        last = gtid_of(database, "INSERT INTO genre VALUES (9999, 'Fado')")
        wait_for(lambda: delivered(kafka_bootstrap, topic, last), 60, "the last change in Kafka", process)
    finally:
        process.stop()

    assert "resuming the initial snapshot at binlog" in process.log_path.read_text()
    messages = read_topic(kafka_bootstrap, topic)
    snapshots = sorted({int(h[VERSION_HEADER]) for k, v, h in messages if is_snapshot_row((k, v, h))})
    assert len(snapshots) == 2  # the first snapshot's position, and the later one the rest was read at
    resumed = [orjson.loads(v) for k, v, h in messages
               if is_snapshot_row((k, v, h)) and int(h[VERSION_HEADER]) == snapshots[1]]
    assert resumed and not [r["key"] for r in resumed if covered_by(state, r["table"], r["key"])]
    assert checksums(guarded_replay(messages)) == checksums(table_rows(database))
