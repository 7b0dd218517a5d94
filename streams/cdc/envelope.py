"""A row change as the record a CDC source emits: key = table + primary key, JSON value, version and transaction
headers (`tf-version` = the commit's log position, monotonic across the source's tables)."""

from __future__ import annotations

from typing import Any, Protocol

from streams.records import TX_ID_HEADER, TX_LAST_HEADER, TX_SEQ_HEADER, VERSION_HEADER, Record
from streams.serde import dumps


class RowChange(Protocol):
    @property
    def op(self) -> str: ...
    @property
    def table(self) -> str: ...
    @property
    def key(self) -> dict[str, Any] | None: ...
    @property
    def before(self) -> dict[str, Any] | None: ...
    @property
    def after(self) -> dict[str, Any] | None: ...
    @property
    def unchanged(self) -> tuple[str, ...]: ...
    @property
    def seq(self) -> int: ...
    @property
    def last(self) -> bool: ...


def change_record(change: RowChange, version: int, source: dict[str, Any]) -> Record:
    """`source` says where the change comes from (log position, transaction id, commit time; no transaction id for
    a snapshot row)."""
    value: dict[str, Any] = {"op": change.op, "table": change.table, "key": change.key, "before": change.before,
                             "after": change.after, "source": source}
    if change.unchanged:
        value["unchanged"] = list(change.unchanged)
    headers = {VERSION_HEADER: str(version).encode()}
    if source.get("txid") is not None:  # snapshot rows belong to no transaction
        headers[TX_ID_HEADER] = str(source["txid"]).encode()
        headers[TX_SEQ_HEADER] = str(change.seq).encode()
        if change.last:
            headers[TX_LAST_HEADER] = b"1"
    return Record(key=dumps({"table": change.table, "key": change.key}), value=dumps(value), headers=headers)
