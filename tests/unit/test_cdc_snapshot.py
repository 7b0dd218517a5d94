"""The initial snapshot's bookkeeping without a database: tables read in turn, a chunk at a time, a resumable state
after each chunk, and progress that survives in its topic (memory binder here, Kafka in the integration test)."""

from __future__ import annotations

from typing import Any

from streams.binders.memory import MemoryBinder
from streams.cdc.pgslot import TableName
from streams.cdc.pgsnapshot import PartsProgress, _Chunk
from streams.cdc.progress import SnapshotProgressStore
from streams.cdc.snapshot import SnapshotCursor, TablePlan


class FakeTables:
    """Answers the chunk queries of `SnapshotCursor` from in-memory rows (text, as PostgreSQL sends them)."""

    def __init__(self, tables: dict[str, list[tuple[str, ...]]]) -> None:
        self.tables = tables
        self.result: list[tuple[str, ...]] = []

    def execute(self, query: Any, parameters: list[str]) -> None:
        table = next(t for t in self.tables if f"Identifier('{t}')" in repr(query))
        limit = int(repr(query).rsplit("Literal(", 1)[1].split(")")[0])
        rows = [r for r in self.tables[table] if not parameters or tuple(map(int, r[:1])) > tuple(map(int, parameters))]
        self.result = rows[:limit]

    def fetchall(self) -> list[tuple[str, ...]]:
        return self.result


def plan(name: str) -> TablePlan:
    return TablePlan(TableName("public", name), ("id", "flag"), (int, lambda t: t in ("t", "true")), ("id",), 3)


ROWS = {"artist": [("1", "true"), ("2", "false"), ("3", None)], "genre": [("7", "t")]}


def test_tables_are_read_in_turn_a_chunk_at_a_time_with_a_state_after_each() -> None:
    tables, cursor = FakeTables(ROWS), SnapshotCursor([plan("artist"), plan("genre")], [])
    chunks, states = [], []
    while (chunk := cursor.read_chunk(tables, 2)) is not None:
        chunks.append((str(chunk[0].table), chunk[1]))
        states.append(cursor.state())
    assert chunks == [("artist", [{"id": 1, "flag": True}, {"id": 2, "flag": False}]),
                      ("artist", [{"id": 3, "flag": None}]), ("genre", [{"id": 7, "flag": True}])]
    assert states == [{"finished": [], "after": ["2"], "done": False},
                      {"finished": ["artist"], "after": None, "done": False},
                      {"finished": ["artist", "genre"], "after": None, "done": True}]


def test_a_snapshot_resumes_after_its_last_saved_chunk() -> None:
    state = {"finished": [], "after": ["2"], "done": False}
    cursor = SnapshotCursor.from_state([plan("artist"), plan("genre")], state)
    chunk = cursor.read_chunk(FakeTables(ROWS), 10)
    assert chunk is not None and chunk[1] == [{"id": 3, "flag": None}]


def test_progress_is_read_back_as_the_last_state_saved() -> None:
    binder = MemoryBinder()
    store = SnapshotProgressStore(binder, "s.cdc.snapshot")
    assert store.load(timeout_s=5) is None
    store.save({"finished": [], "after": ["2"], "done": False})
    store.save({"finished": ["artist"], "after": None, "done": True})
    assert SnapshotProgressStore(binder, "s.cdc.snapshot").load(timeout_s=5) == {
        "finished": ["artist"], "after": None, "done": True}


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
    progress.advance(_Chunk(artist_1, [], ["3"], False))
    progress.advance(_Chunk(genre, [], None, True))
    state = progress.state()
    assert state == {"bounds": {"artist": ["2"]}, "finished": ["genre"], "after": {"artist#1": ["3"]}, "done": False}
    resumed = PartsProgress(plans, state)
    resumed.cut(plans, resumed.bounds or {})
    assert [p.name for p in resumed.left] == ["artist#0", "artist#1"] and resumed.after == {"artist#1": ["3"]}

    earlier = PartsProgress(plans, {"finished": [], "after": ["2"], "done": False})
    earlier.cut(plans, earlier.bounds or {})
    assert [p.name for p in earlier.left] == ["artist", "genre"] and earlier.after == {"artist": ["2"]}
    assert artist_0.low is None
