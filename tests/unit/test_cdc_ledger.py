"""A CDC source confirms a transaction only once every change of it is durable, and a change record says where it
belongs: key = table + primary key, the commit LSN as `tf-version`, its transaction and place in it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson

from streams.cdc.changes import Change
from streams.cdc.envelope import change_record
from streams.cdc.ledger import AckLedger
from streams.records import TX_ID_HEADER, TX_LAST_HEADER, TX_SEQ_HEADER, VERSION_HEADER


def test_a_transaction_is_confirmed_when_all_its_changes_are_acked_not_before() -> None:
    ledger = AckLedger(confirmed=100)
    ledger.emitted(3)
    ledger.transaction_end(200)  # three changes, ending at 200
    ledger.emitted(2)  # the next transaction is still open
    ledger.acked(2)
    assert ledger.confirmed == 100
    ledger.acked(1)
    assert ledger.confirmed == 200 and not ledger.settled
    ledger.transaction_end(300)
    ledger.acked(2)
    assert ledger.confirmed == 300 and ledger.settled


def test_an_empty_transaction_is_confirmed_at_once_when_nothing_is_outstanding() -> None:
    ledger = AckLedger()
    ledger.transaction_end(50)
    assert ledger.confirmed == 50


def test_quiet_stretches_confirm_the_servers_position_only_when_settled() -> None:
    ledger = AckLedger(confirmed=10)
    ledger.emitted(1)
    ledger.advance_idle(500)
    assert ledger.confirmed == 10
    ledger.transaction_end(20)
    ledger.acked(1)
    ledger.advance_idle(500)
    assert ledger.confirmed == 500
    ledger.advance_idle(400)  # never backwards
    assert ledger.confirmed == 500


def test_a_lost_connection_forgets_what_was_not_confirmed() -> None:
    ledger = AckLedger(confirmed=10)
    ledger.emitted(5)
    ledger.transaction_end(90)
    ledger.forget_outstanding()
    assert ledger.settled and ledger.confirmed == 10
    ledger.emitted(1)
    ledger.transaction_end(90)
    ledger.acked(1)
    assert ledger.confirmed == 90


def test_a_change_record_carries_key_version_transaction_and_exact_values() -> None:
    when = datetime(2024, 2, 20, 0, 0, tzinfo=UTC)
    change = Change("u", "track", {"track_id": 7}, None, {"track_id": 7, "price": Decimal("1.10"), "raw": b"\x00"},
                    commit_lsn=4242, xid=99, commit_ts=when, unchanged=("lyrics",), seq=3, last=True)
    record = change_record(change, 4242, {"lsn": 4242, "txid": 99, "commit_ts": when})
    assert orjson.loads(record.key) == {"table": "track", "key": {"track_id": 7}}
    assert orjson.loads(record.value) == {
        "op": "u", "table": "track", "key": {"track_id": 7}, "before": None,
        "after": {"track_id": 7, "price": "1.10", "raw": "AA=="}, "unchanged": ["lyrics"],
        "source": {"lsn": 4242, "txid": 99, "commit_ts": "2024-02-20T00:00:00Z"},
    }
    assert record.headers == {VERSION_HEADER: b"4242", TX_ID_HEADER: b"99", TX_SEQ_HEADER: b"3",
                              TX_LAST_HEADER: b"1"}
