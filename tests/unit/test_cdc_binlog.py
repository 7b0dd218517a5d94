"""Binlog events → row changes and their records: keys, versions, transactions, types, key changes, truncate."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from streams.cdc.binlog import (
    BinlogError,
    Change,
    ChangeAssembler,
    RowsEvent,
    Statement,
    TableShape,
    TransactionEnd,
    TxBegin,
    TxCommit,
    binlog_sequence,
    position_number,
    truncated_table,
)
from streams.cdc.envelope import change_record
from streams.records import TX_ID_HEADER, TX_LAST_HEADER, TX_SEQ_HEADER, VERSION_HEADER

TRACK = TableShape("track", ("track_id",), booleans=frozenset({"explicit"}))
LINK = TableShape("track_genre", ("track_id", "genre_id"))
DOCS = TableShape("docs", ("id",), json=frozenset({"body"}))
FILE = "binlog.000007"


def assembler(ddl: list[Statement] | None = None) -> ChangeAssembler:
    shapes = {s.name: s for s in (TRACK, LINK, DOCS)}
    return ChangeAssembler("catalog", shapes, on_ddl=(ddl.append if ddl is not None else lambda s: None))


def feed(events: list[object], target: ChangeAssembler | None = None) -> list[Change | TransactionEnd]:
    a = target or assembler()
    return [item for event in events for item in a.feed(event)]  # type: ignore[arg-type]


def track(track_id: int, explicit: int = 0, title: str = "t") -> dict[str, object]:
    return {"track_id": track_id, "title": title, "explicit": explicit,
            "updated_at": datetime(2024, 2, 20, 9, 0, 0, 123456)}


def changes(items: list[Change | TransactionEnd]) -> list[Change]:
    return [i for i in items if isinstance(i, Change)]


def test_position_number_orders_like_the_binlog() -> None:
    assert binlog_sequence("mysql-bin.000042") == 42
    assert position_number("binlog.000001", 4) == (1 << 32) + 4
    assert position_number("binlog.000001", 1_073_741_823) < position_number("binlog.000002", 4)
    with pytest.raises(BinlogError):
        binlog_sequence("binlog")


def test_one_change_per_row_with_the_transaction_it_belongs_to() -> None:
    items = feed([
        TxBegin(FILE, 1000, "0-1-5", 1_708_419_600),
        RowsEvent("insert", "catalog", "track", [track(1, 1), track(2)]),
        RowsEvent("update", "catalog", "track", [(track(2), track(2, title="u"))]),
        RowsEvent("delete", "catalog", "track_genre", [{"track_id": 1, "genre_id": 3}]),
        TxCommit(FILE, 1500),
    ])
    got = changes(items)
    assert [(c.op, c.table, c.key) for c in got] == [
        ("c", "track", {"track_id": 1}), ("c", "track", {"track_id": 2}), ("u", "track", {"track_id": 2}),
        ("d", "track_genre", {"track_id": 1, "genre_id": 3})]
    assert [c.seq for c in got] == [1, 2, 3, 4] and [c.last for c in got] == [False, False, False, True]
    assert {c.version for c in got} == {position_number(FILE, 1000)}
    assert got[0].after is not None and got[0].after["explicit"] is True and got[1].after["explicit"] is False
    assert got[2].before is not None and got[2].before["title"] == "t" and got[2].after["title"] == "u"
    assert items[-1] == TransactionEnd(FILE, 1500, "0-1-5", 4)


def test_the_record_carries_key_version_and_transaction_headers() -> None:
    got = changes(feed([TxBegin(FILE, 1000, "0-1-5", 1_708_419_600),
                        RowsEvent("insert", "catalog", "track", [track(1, 1)]), TxCommit(FILE, 1500)]))
    record = change_record(got[0], got[0].version, got[0].source)
    assert orjson.loads(record.key) == {"table": "track", "key": {"track_id": 1}}
    value = orjson.loads(record.value)
    assert value["op"] == "c" and value["before"] is None
    assert value["after"] == {"track_id": 1, "title": "t", "explicit": True,
                              "updated_at": "2024-02-20T09:00:00.123456Z"}
    assert value["source"] == {"file": FILE, "pos": 1000, "gtid": "0-1-5", "txid": "0-1-5",
                               "commit_ts": "2024-02-20T09:00:00Z"}
    assert record.headers[VERSION_HEADER] == str((7 << 32) + 1000).encode()
    assert record.headers[TX_ID_HEADER] == b"0-1-5" and record.headers[TX_SEQ_HEADER] == b"1"
    assert record.headers[TX_LAST_HEADER] == b"1"


def test_exact_types_on_the_wire() -> None:
    row = {"id": 1, "price": Decimal("12345678901234.123456"), "body": '{"a": [1, 2.5, "x😀"], "n": null}',
           "name": "héllo 😀 𝄞", "blob": b"\x00\xff"}
    got = changes(feed([TxBegin(FILE, 10, None, 0), RowsEvent("insert", "catalog", "docs", [row]),
                        TxCommit(FILE, 20)]))
    value = orjson.loads(change_record(got[0], got[0].version, got[0].source).value)
    assert value["after"] == {"id": 1, "price": "12345678901234.123456", "body": {"a": [1, 2.5, "x😀"], "n": None},
                              "name": "héllo 😀 𝄞", "blob": "AP8="}
    assert value["source"]["txid"] == f"{FILE}:10"  # no GTID: the transaction's position names it


def test_time_and_set_columns_come_out_as_json_can_say_them() -> None:
    shape = TableShape("slots", ("id",), times=frozenset({"length", "offset"}), sets=frozenset({"days"}))
    row = shape.row({"id": 1, "length": timedelta(hours=30, minutes=5, seconds=1, microseconds=250),
                     "offset": -timedelta(minutes=1, seconds=30), "days": {"tue", "mon"}})
    assert row == {"id": 1, "length": "30:05:01.000250", "offset": "-00:01:30", "days": ["mon", "tue"]}


def test_mysql_binary_json_comes_out_with_text_keys() -> None:
    row = {"id": 2, "body": {b"a": [{b"b": b"c"}], b"n": None}}
    got = changes(feed([TxBegin(FILE, 10, None, 0), RowsEvent("insert", "catalog", "docs", [row]),
                        TxCommit(FILE, 20)]))
    assert got[0].after == {"id": 2, "body": {"a": [{"b": "c"}], "n": None}}


def test_a_primary_key_change_is_a_delete_and_an_insert() -> None:
    got = changes(feed([TxBegin(FILE, 10, "0-1-9", 0),
                        RowsEvent("update", "catalog", "track", [(track(1), track(9))]), TxCommit(FILE, 20)]))
    assert [(c.op, c.key) for c in got] == [("d", {"track_id": 1}), ("c", {"track_id": 9})]
    assert got[0].before is not None and got[0].after is None and got[1].before is None
    assert [c.seq for c in got] == [1, 2] and got[1].last


def test_truncate_of_a_followed_table_is_one_change_ending_its_transaction() -> None:
    ddl: list[Statement] = []
    a = assembler(ddl)
    items = feed([TxBegin(FILE, 10, "0-1-9", 0), Statement(FILE, 60, "catalog", "TRUNCATE TABLE `track`")], a)
    assert [(c.op, c.table, c.key, c.last) for c in changes(items)] == [("t", "track", None, True)]
    assert items[-1] == TransactionEnd(FILE, 60, "0-1-9", 1)
    items = feed([TxBegin(FILE, 70, "0-1-10", 0), Statement(FILE, 90, "other", "truncate catalog.track_genre"),
                  TxBegin(FILE, 100, "0-1-11", 0), Statement(FILE, 120, "catalog", "truncate unfollowed")], a)
    assert [(c.op, c.table) for c in changes(items)] == [("t", "track_genre")]
    assert ddl == []
    feed([TxBegin(FILE, 130, "0-1-12", 0), Statement(FILE, 150, "catalog", "ALTER TABLE track ADD x INT")], a)
    assert [s.query for s in ddl] == ["ALTER TABLE track ADD x INT"]


def test_truncate_statements_are_recognised() -> None:
    assert truncated_table("TRUNCATE TABLE `track`", "db") == ("db", "track")
    assert truncated_table("truncate `my db`.`a``b`;", "db") == ("my db", "a`b")
    assert truncated_table("/* c */ TRUNCATE t", "db") == ("db", "t")
    assert truncated_table("DELETE FROM t", "db") is None
    assert truncated_table("TRUNCATE TABLE a, b", "db") is None


def test_other_schemas_and_tables_and_empty_transactions_yield_only_their_end() -> None:
    items = feed([TxBegin(FILE, 10, "0-1-1", 0), RowsEvent("insert", "other", "track", [track(1)]),
                  RowsEvent("insert", "catalog", "unfollowed", [{"id": 1}]), TxCommit(FILE, 20)])
    assert items == [TransactionEnd(FILE, 20, "0-1-1", 0)]


def test_changes_are_held_back_only_until_the_next_one_so_a_long_transaction_streams() -> None:
    a = assembler()
    assert feed([TxBegin(FILE, 10, "0-1-1", 0)], a) == []
    first = feed([RowsEvent("insert", "catalog", "track", [track(i) for i in range(1, 101)])], a)
    assert len(first) == 99 and a.mid_transaction
    rest = feed([TxCommit(FILE, 999)], a)
    assert isinstance(rest[0], Change) and rest[0].last and isinstance(rest[1], TransactionEnd)
    assert not a.mid_transaction


def test_a_row_outside_a_transaction_is_refused() -> None:
    with pytest.raises(BinlogError):
        feed([RowsEvent("insert", "catalog", "track", [track(1)])])


def test_a_mysql_8_gtid_names_the_transaction_and_its_binlog_position_orders_it() -> None:
    gtid = "3e11fa47-71ca-11e1-9e33-c80aa9429562:43"  # MySQL 8: server UUID and sequence
    items = feed([TxBegin("binlog.000003", 400, gtid, 1_708_419_600),
                  RowsEvent("insert", "catalog", "track", [track(1)]), TxCommit("binlog.000003", 700),
                  TxBegin("binlog.000003", 800, "3e11fa47-71ca-11e1-9e33-c80aa9429562:44", 1_708_419_601),
                  RowsEvent("delete", "catalog", "track", [track(1)]), TxCommit("binlog.000003", 900)])
    first, second = changes(items)
    record = change_record(first, first.version, first.source)
    assert record.headers[TX_ID_HEADER] == gtid.encode() and first.source["gtid"] == gtid
    assert first.version == position_number("binlog.000003", 400) < second.version
    assert items[1] == TransactionEnd("binlog.000003", 700, gtid, 1)
