"""One story for both CDC sources' initial snapshot of a large catalog: a writer writes while the snapshot is read and
a moment after; the source is undeployed, the database changed, the source redeployed and a last row inserted. Then
every snapshot row was read once, the metric counted them, no second snapshot ran, and the guarded replay of the
topic equals the tables."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from streams.runtime.metrics import metric_sum
from tests.integration.cdc_replay import TopicTail, checksums, guarded_replay, snapshot_rows_read_once
from tests.integration.processes import AppProcess, wait_for


class Writer(Protocol):
    stopping: bool
    error: BaseException | None
    committed: list[Any]

    def start(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...


@dataclass(frozen=True)
class Source:
    """What differs between the engines: how the source starts, when its snapshot is done, the SQL run while it is
    away, how to open a cursor, its tables' rows, and how its log says the snapshot started."""

    start: Callable[[str], AppProcess]  # a label -> the source, started
    snapshot_done: Callable[[AppProcess], None]
    while_away: Sequence[str]
    connect: Callable[[str], AbstractContextManager[Any]]
    table_rows: Callable[[str, Sequence[str]], Any]
    started: str


def snapshot_under_a_writer_converges_and_is_never_repeated(database: str, bootstrap: str, topic: str,
                                                            writer: Writer, source: Source,
                                                            tables: Sequence[str], least_rows: int) -> None:
    writer.start()
    process = first = source.start("snap")
    tail = TopicTail(bootstrap, topic)
    try:
        process.wait_ready()
        source.snapshot_done(process)
        metrics = process.metrics()
        time.sleep(1)  # the writer goes on after the snapshot, into the stream
        writer.stopping = True
        writer.join(30)
        assert writer.error is None, writer.error
        assert process.stop() == 0  # undeploy
        with source.connect(database) as cursor:  # changes while the source is away
            for statement in source.while_away:
                cursor.execute(statement)
        process = source.start("snap-redeployed")
        process.wait_ready()
        with source.connect(database) as cursor:
            cursor.execute("INSERT INTO genre VALUES (9999, 'Fado')")
        wait_for(lambda: tail.holds("genre", {"genre_id": 9999}), 60, "the last change in Kafka", process)
    finally:
        process.stop()
        tail.close()

    messages = tail.messages
    expected = source.table_rows(database, tables)
    read = snapshot_rows_read_once(messages)
    assert read > least_rows and metric_sum(metrics, "tuneflow_cdc_snapshot_rows_total") == read
    assert source.started in first.log_path.read_text()
    assert "initial snapshot" not in process.log_path.read_text()  # the redeploy read no second one
    assert len(writer.committed) > 100  # it kept writing while the snapshot was read
    assert checksums(guarded_replay(messages)) == checksums(expected)
