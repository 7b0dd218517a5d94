"""The initial snapshot's bookkeeping without a database: parts read a chunk at a time by readers, a resumable state
after each durable chunk, progress that survives in its topic (memory binder here, Kafka in the integration tests),
and each engine's chunk queries and snapshot positions (MySQL 8's formats are checked here only: no MySQL server runs
on these machines)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from streams.binders.memory import MemoryBinder
from streams.cdc.binlog import TableShape, TxBegin, position_number
from streams.cdc.metrics import CdcMetrics
from streams.cdc.mysnapshot import TablePlan as MyTablePlan
from streams.cdc.mysnapshot import binlog_status, commit_block, is_mariadb, key_after, snapshot_status
from streams.cdc.pgslot import TableName
from streams.cdc.pgsnapshot import TablePlan, read_chunk
from streams.cdc.progress import SnapshotProgressStore
from streams.cdc.snapshot import Chunk, InitialSnapshot, PartsProgress, Row, TablePart
from streams.records import TX_ID_HEADER, VERSION_HEADER


class FakeTables:
    """Answers the chunk queries of `read_chunk` from in-memory rows (text, as PostgreSQL sends them)."""

    def __init__(self, tables: dict[str, list[tuple[str | None, ...]]]) -> None:
        self.tables = tables
        self.result: list[tuple[str | None, ...]] = []

    def execute(self, query: Any, parameters: list[str]) -> None:
        table = next(t for t in self.tables if f"Identifier('{t}')" in repr(query))
        limit = int(repr(query).rsplit("Literal(", 1)[1].split(")")[0])
        rows = [r for r in self.tables[table]
                if not parameters or tuple(int(v or 0) for v in r[:1]) > tuple(map(int, parameters))]
        self.result = rows[:limit]

    def fetchall(self) -> list[tuple[str | None, ...]]:
        return self.result


def plan(name: str) -> TablePlan:
    return TablePlan(table=name, key=("id",), estimated_rows=3, relation=TableName("public", name),
                     columns=("id", "flag"), converters=(int, lambda t: t in ("t", "true")))


ROWS: dict[str, list[tuple[str | None, ...]]] = {"artist": [("1", "true"), ("2", "false"), ("3", None)],
                                                 "genre": [("7", "t")]}


def test_a_postgresql_chunk_is_rows_converted_from_text_and_the_last_key_as_text() -> None:
    tables = FakeTables(ROWS)
    assert read_chunk(tables, plan("artist"), None, 2) == ([{"id": 1, "flag": True}, {"id": 2, "flag": False}],
                                                           ["2"])
    assert read_chunk(tables, plan("artist"), ["2"], 2) == ([{"id": 3, "flag": None}], ["3"])
    assert read_chunk(tables, plan("artist"), ["3"], 2) == ([], [])


def test_a_table_cut_at_values_of_its_first_key_column_reads_each_range_in_its_own_part() -> None:
    parts = plan("artist").parts(["10", "20"])
    assert [(p.name, p.low, p.high) for p in parts] == [("artist#0", None, "10"), ("artist#1", "10", "20"),
                                                         ("artist#2", "20", None)]
    _, parameters = parts[1].chunk_query(["12"], 5)
    assert parameters == ["12", "10", "20"]  # after the last key read, and within the part's range
    assert [p.name for p in plan("genre").parts([])] == ["genre"]


def test_parts_progress_is_a_resumable_state_and_reads_one_saved_before_tables_were_cut() -> None:
    plans = [plan("artist"), plan("genre")]
    progress = PartsProgress(plans, None)
    progress.cut(plans, {"artist": ["2"]})
    artist_0, artist_1, genre = progress.parts
    progress.advance(Chunk(artist_1, [], ["3"], False))
    progress.advance(Chunk(genre, [], None, True))
    state = progress.state()
    assert state == {"bounds": {"artist": ["2"]}, "finished": ["genre"], "after": {"artist#1": ["3"]}, "done": False}
    resumed = PartsProgress(plans, state)
    resumed.cut(plans, resumed.bounds or {})
    assert [p.name for p in resumed.left] == ["artist#0", "artist#1"] and resumed.after == {"artist#1": ["3"]}

    earlier = PartsProgress(plans, {"finished": [], "after": ["2"], "done": False})
    earlier.cut(plans, earlier.bounds or {})
    assert [p.name for p in earlier.left] == ["artist", "genre"] and earlier.after == {"artist": ["2"]}
    assert artist_0.low is None


def test_progress_is_read_back_as_the_last_state_saved() -> None:
    binder = MemoryBinder()
    store = SnapshotProgressStore(binder, "s.cdc.snapshot")
    assert store.load(timeout_s=5) is None
    store.save({"finished": [], "after": ["2"], "done": False})
    store.save({"finished": ["artist"], "after": None, "done": True})
    assert SnapshotProgressStore(binder, "s.cdc.snapshot").load(timeout_s=5) == {
        "finished": ["artist"], "after": None, "done": True}


class ListReader:
    """A reader over in-memory tables of integer keys, counting the chunks it read."""

    def __init__(self, tables: dict[str, list[int]]) -> None:
        self.tables = tables
        self.reads: list[tuple[str, list[Any] | None]] = []
        self.lock = threading.Lock()

    def read(self, part: TablePart, after: list[Any] | None, limit: int) -> tuple[list[Row], list[Any]]:
        with self.lock:
            self.reads.append((part.name, after))
        ids = [i for i in self.tables[part.table] if (after is None or i > after[0])
               and (part.low is None or i >= part.low) and (part.high is None or i < part.high)][:limit]
        return [{"id": i, "name": f"n{i}"} for i in ids], ids[-1:]

    def cut(self, part: TablePart, parts: int) -> list[Any]:
        ids = self.tables[part.table]
        return [ids[len(ids) * i // parts] for i in range(1, parts)]

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass


def run_snapshot(store: SnapshotProgressStore, readers: list[ListReader], state: dict[str, Any] | None,
                 stop_after: int | None = None) -> list[dict[str, Any]]:
    """Read, acknowledging each batch, until the snapshot is read (or `stop_after` records: a kill)."""
    snapshot = InitialSnapshot(store, CdcMetrics(CollectorRegistry(), "s", "cdc", 0), logging.getLogger("t"),
                               chunk=4)
    parts = [TablePart("artist", ("id",), 10), TablePart("genre", ("id",), 3)]
    snapshot.begin(readers, readers[0].cut, 77, {"file": "binlog.000001", "pos": 4}, parts, state, "here")
    values = []
    while snapshot.reading:
        records = snapshot.read(3, 5.0)
        values.extend(orjson.loads(r.value) for r in records)  # type: ignore[arg-type]
        assert all(r.headers[VERSION_HEADER] == b"77" and TX_ID_HEADER not in r.headers for r in records)
        if stop_after is not None and len(values) >= stop_after:
            snapshot.close()
            return values
        assert snapshot.acked(len(records)) == 0
    assert snapshot.acked(5) == 5  # what follows the snapshot is not its own
    return values


def test_readers_read_every_part_once_and_a_resumed_snapshot_skips_durable_chunks() -> None:
    binder = MemoryBinder()
    tables = {"artist": list(range(1, 11)), "genre": [1, 2, 3]}
    store = SnapshotProgressStore(binder, "s.cdc.snapshot")
    first = run_snapshot(store, [ListReader(tables), ListReader(tables)], None, stop_after=6)
    assert first[0]["op"] == "r" and first[0]["source"] == {"file": "binlog.000001", "pos": 4, "snapshot": True}
    state = SnapshotProgressStore(binder, "s.cdc.snapshot").load(timeout_s=5)
    assert state is not None and not state["done"] and state["bounds"] == {"artist": [6], "genre": [2]}

    again = ListReader(tables)
    rest = run_snapshot(SnapshotProgressStore(binder, "s.cdc.snapshot"), [again], state)
    read = {(v["table"], v["key"]["id"]) for v in first + rest}
    assert read == {("artist", i) for i in range(1, 11)} | {("genre", i) for i in (1, 2, 3)}
    assert len(rest) < 13 and all(name not in state["finished"] for name, _ in again.reads)
    assert SnapshotProgressStore(binder, "s.cdc.snapshot").load(timeout_s=5)["done"] is True  # type: ignore[index]


def my_plan() -> MyTablePlan:
    shape = TableShape("track_artist", ("track_id", "artist_id", "role"), columns=("track_id", "artist_id", "role"),
                       sets=frozenset({"role"}))
    return MyTablePlan(table="track_artist", key=shape.key, estimated_rows=1, shape=shape)


def test_a_mysql_chunk_query_compares_a_composite_key_column_by_column_within_its_part() -> None:
    part = my_plan().parts([100])[1]
    query, parameters = part.chunk_query([120, 7, "MAIN"], 500)
    assert query == ("SELECT `track_id`, `artist_id`, `role` FROM `track_artist` WHERE (`track_id` > %s OR "
                     "(`track_id` = %s AND (`artist_id` > %s OR (`artist_id` = %s AND `role` > %s)))) AND "
                     "`track_id` >= %s ORDER BY `track_id`, `artist_id`, `role` LIMIT 500")
    assert parameters == [120, 120, 7, 7, "MAIN", 100]
    assert key_after(["we`ird"], [1]) == ("`we``ird` > %s", [1])
    assert my_plan().shape.row({"track_id": 1, "artist_id": 2, "role": "b,a"})["role"] == ["a", "b"]


def test_snapshot_positions_of_mariadb_and_of_mysql_8() -> None:
    assert snapshot_status([("Binlog_snapshot_file", "mariadb-bin.000012"), ("Binlog_snapshot_position", "3456")]) \
        == ("mariadb-bin.000012", 3456)
    assert snapshot_status([]) is None  # MySQL has no such variables: commits are blocked instead
    assert commit_block(is_mariadb("10.11.19-MariaDB-0+deb12u1-log"))[0] == ("BACKUP STAGE START",
                                                                                "BACKUP STAGE BLOCK_COMMIT")
    assert commit_block(is_mariadb("8.0.36")) == (("FLUSH TABLES WITH READ LOCK",), ("UNLOCK TABLES",))
    # MySQL 8's SHOW BINARY LOG STATUS / SHOW MASTER STATUS: a GTID set per server UUID, separated by newlines.
    mysql = binlog_status(("binlog.000003", 157, "", "", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42,\n"
                                                            "4a2b7c1e-0000-11ef-8a5b-0242ac120002:1-7"))
    assert mysql is not None and mysql.gtid == ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42,"
                                                 "4a2b7c1e-0000-11ef-8a5b-0242ac120002:1-7")
    assert mysql.number == position_number("binlog.000003", 157) == (3 << 32) + 157
    assert str(mysql).startswith("binlog binlog.000003:157 (gtid 3e11fa47")
    mariadb = binlog_status(("mysql-bin.000012", 3456, "", ""))
    assert mariadb is not None and mariadb.gtid is None and mariadb.saved() == {"file": "mysql-bin.000012",
                                                                                "pos": 3456, "gtid": None}
    assert binlog_status(("binlog.000003", 157, "", "", "")).gtid is None  # type: ignore[union-attr]
    # A MySQL 8 transaction's GTID names it; its version is still the binlog position (GTIDs do not order).
    begin = TxBegin("binlog.000003", 400, "3e11fa47-71ca-11e1-9e33-c80aa9429562:43", 0)
    assert position_number(begin.file, begin.pos) > mysql.number
