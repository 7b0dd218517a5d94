"""The pgoutput decoder and the change assembler on real messages captured from PostgreSQL 15."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from streams.cdc.changes import Change, ChangeAssembler, TransactionEnd
from streams.cdc.pgoutput import (
    UNCHANGED,
    Begin,
    Commit,
    Delete,
    Insert,
    PgOutputError,
    Relation,
    Truncate,
    TypeInfo,
    Update,
    decode,
    lsn_text,
    parse_lsn,
)
from streams.cdc.pgtypes import converter, parse_array
from tests.unit.pgoutput_vectors import BIG, MESSAGES

PRIMARY_KEYS = {"kinds": ["id"], "full_id": ["a", "b"], "moods": ["id"]}


def decoded() -> list[object]:
    return [decode(bytes.fromhex(m)) for m in MESSAGES]


def assembled() -> list[Change | TransactionEnd]:
    assembler = ChangeAssembler(lambda relation: PRIMARY_KEYS[relation.name])
    return [item for message in decoded() for item in assembler.feed(message)]  # type: ignore[arg-type]


def changes() -> list[Change]:
    return [item for item in assembled() if isinstance(item, Change)]


def test_every_message_kind_decodes_and_transactions_bracket_changes() -> None:
    messages = decoded()
    kinds = [type(m).__name__ for m in messages]
    assert {"Begin", "Commit", "Relation", "Insert", "Update", "Delete", "Truncate", "TypeInfo"} <= set(kinds)
    begins = [m for m in messages if isinstance(m, Begin)]
    commits = [m for m in messages if isinstance(m, Commit)]
    assert [b.final_lsn for b in begins] == [c.commit_lsn for c in commits]
    assert all(c.end_lsn > c.commit_lsn for c in commits)
    assert [c.commit_lsn for c in commits] == sorted(c.commit_lsn for c in commits)
    assert all(b.commit_ts.tzinfo is UTC and b.commit_ts.year >= 2024 for b in begins)


def test_relation_describes_columns_types_and_replica_identity() -> None:
    relations = {m.name: m for m in decoded() if isinstance(m, Relation)}
    kinds = relations["kinds"]
    assert kinds.namespace == "public" and kinds.replica_identity == "d"
    assert [(c.name, c.type_oid) for c in kinds.columns][:4] == [("id", 20), ("s", 21), ("i", 23), ("n", 1700)]
    assert [c.name for c in kinds.columns if c.in_identity] == ["id"]
    assert relations["full_id"].replica_identity == "f"
    assert all(c.in_identity for c in relations["full_id"].columns)  # FULL flags every column, not the key
    mood_type = next(m for m in decoded() if isinstance(m, TypeInfo))
    assert mood_type.name == "mood" and relations["moods"].columns[1].type_oid == mood_type.type_oid


def test_tuple_data_has_nulls_text_and_unchanged_toast() -> None:
    messages = decoded()
    inserts = [m for m in messages if isinstance(m, Insert)]
    assert inserts[1].new[0] == b"2" and inserts[1].new[1:] == (None,) * 16
    toast_update = next(m for m in messages if isinstance(m, Update) and m.old is None)
    assert toast_update.new[1] == b"7" and toast_update.new[-1] is UNCHANGED
    key_change = next(m for m in messages if isinstance(m, Update) and m.old_is_key_only)
    assert key_change.old is not None and key_change.old[0] == b"2" and key_change.new[0] == b"3"
    deletes = [m for m in messages if isinstance(m, Delete)]
    assert deletes[0].old_is_key_only and not deletes[1].old_is_key_only
    truncate = next(m for m in messages if isinstance(m, Truncate))
    assert len(truncate.relation_ids) == 2 and not truncate.cascade


def test_types_convert_exactly() -> None:
    row = changes()[0].after
    assert row is not None
    assert row == {
        "id": 1, "s": -32768, "i": 2147483647, "n": Decimal("12345678901234.123456"), "nn": row["nn"], "b": True,
        "t": "Ünïcödé 日本語 한국어 العربية 🎵", "v": 'it\'s "q"', "ch": "ab  ", "d": date(2024, 2, 29),
        "ts": datetime(2024, 2, 20, 9, 0, 0, 123456), "tz": datetime(2024, 2, 20, 0, 0, tzinfo=UTC),
        "by": b"\x00\xff\x10", "ia": [1, None, 3], "ta": ["a b", 'c"d', None, "NULL", ""],
        "j": {"k": [1, 2.5, "x"], "n": None}, "big": BIG,
    }
    assert row["nn"].is_nan() and row["tz"].tzinfo is not None and row["tz"].utcoffset().total_seconds() == 0
    moods = next(c for c in changes() if c.table == "moods")
    assert moods.after == {"id": 1, "m": "ok"}  # an enum stays its label


def test_changes_carry_ops_keys_transactions_and_toast_behaviour() -> None:
    got = changes()
    assert [(c.op, c.table, c.key) for c in got] == [
        ("c", "kinds", {"id": 1}), ("c", "kinds", {"id": 2}), ("u", "kinds", {"id": 1}),
        ("d", "kinds", {"id": 2}), ("c", "kinds", {"id": 3}),  # a primary-key change
        ("d", "kinds", {"id": 3}),
        ("c", "full_id", {"a": 1, "b": 2}), ("u", "full_id", {"a": 1, "b": 2}),
        ("d", "full_id", {"a": 1, "b": 2}), ("c", "full_id", {"a": 1, "b": 5}),
        ("d", "full_id", {"a": 1, "b": 5}), ("c", "moods", {"id": 1}),
        ("t", "kinds", None), ("t", "full_id", None),
    ]
    default_toast = got[2]
    assert default_toast.before is None and default_toast.unchanged == ("big",) and "big" not in default_toast.after
    assert got[3].before == {"id": 2} and got[4].after is not None and got[4].after["id"] == 3
    full_key_change = got[9]  # FULL: the untouched TOAST value is copied from the old row, never null
    assert full_key_change.unchanged == () and full_key_change.after == {"a": 1, "b": 5, "note": BIG}
    assert got[10].before == {"a": 1, "b": 5, "note": BIG}
    assert [(c.seq, c.last) for c in got[3:5]] == [(1, False), (2, True)]
    assert [(c.seq, c.last) for c in got[-2:]] == [(1, False), (2, True)]
    assert all(c.xid == got[3].xid for c in got[3:5]) and got[3].commit_lsn == got[4].commit_lsn


def test_each_transaction_ends_after_its_changes_with_its_end_lsn() -> None:
    items = assembled()
    ends = [i for i in items if isinstance(i, TransactionEnd)]
    commits = [m for m in decoded() if isinstance(m, Commit)]
    assert [e.end_lsn for e in ends] == [c.end_lsn for c in commits]
    assert sum(e.changes for e in ends) == len(changes())
    assert isinstance(items[-1], TransactionEnd) and items[-2].last  # type: ignore[union-attr]


@pytest.mark.parametrize("payload", [b"", b"Z\x00", b"B\x00\x01", b"I\x00\x00\x00\x01N\x00\x01x", b"C" + b"\x00" * 30])
def test_malformed_messages_are_refused_with_a_reason(payload: bytes) -> None:
    with pytest.raises(PgOutputError):
        decode(payload)


def test_a_change_of_an_undescribed_relation_is_refused() -> None:
    assembler = ChangeAssembler(lambda relation: [])
    assembler.feed(decode(bytes.fromhex(MESSAGES[0])))
    with pytest.raises(PgOutputError, match="no Relation"):
        assembler.feed(decode(bytes.fromhex(MESSAGES[2])))


@pytest.mark.parametrize(("oid", "text", "value"), [
    (1700, "-0.000000000000000000001", Decimal("-1E-21")),
    (1700, "Infinity", Decimal("Infinity")),
    (20, "-9223372036854775808", -(2**63)),
    (1184, "1900-01-01 00:00:00+08:27:52", datetime(1899, 12, 31, 15, 32, 8, tzinfo=UTC)),
    (1184, "infinity", "infinity"),
    (1082, "0044-03-15 BC", "0044-03-15 BC"),
    (17, "\\\\a\\001", b"\\a\x01"),
    (701, "NaN", "NaN"),
    (3802, '{"n": 9223372036854775807, "f": 0.1}', {"n": 9223372036854775807, "f": 0.1}),
    (1009, '{{"x,y",z},{NULL,"\\\\"}}', [["x,y", "z"], [None, "\\"]]),
    (1007, "[0:1]={5,6}", [5, 6]),
    (1007, "{}", []),
    (16, "true", True),
    (16, "f", False),
    (1185, '{"2024-01-01 00:00:00+00"}', [datetime(2024, 1, 1, tzinfo=UTC)]),
])
def test_text_values_convert_by_type(oid: int, text: str, value: object) -> None:
    assert converter(oid)(text) == value


def test_array_parser_refuses_trailing_text() -> None:
    with pytest.raises(ValueError, match="trailing"):
        parse_array("{1}x", int)


def test_lsn_text_round_trips() -> None:
    assert lsn_text(parse_lsn("16/B374D848")) == "16/B374D848"
