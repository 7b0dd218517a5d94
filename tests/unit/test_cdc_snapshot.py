"""The initial snapshot's bookkeeping without a database: tables read in turn, a chunk at a time, a resumable state
after each chunk, and progress that survives in its topic (memory binder here, Kafka in the integration test)."""

from __future__ import annotations

from typing import Any

from streams.binders.memory import MemoryBinder
from streams.cdc.pgslot import TableName
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
