"""A CDC source's position store: nothing before the first start, then the last position written."""

from __future__ import annotations

from streams.binders.memory import MemoryBinder
from streams.cdc.positions import PositionStore, positions_topic


def test_the_last_position_written_is_the_one_read_back() -> None:
    binder = MemoryBinder()
    topic = positions_topic("s", "cdc")
    assert topic == "s.cdc.offsets"
    store = PositionStore(binder, topic)
    assert store.load(timeout_s=5) is None
    store.save({"file": "binlog.000001", "pos": 4, "gtid": None}, flush=True)
    store.save({"file": "binlog.000002", "pos": 1234, "gtid": "0-1-9"})
    store.close()
    assert PositionStore(binder, topic).load(timeout_s=5) == {"file": "binlog.000002", "pos": 1234, "gtid": "0-1-9"}
