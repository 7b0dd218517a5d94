"""The record every app sees: key, value, headers, and where it was read from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Headers = dict[str, bytes]

VERSION_HEADER = "tf-version"
# Which collection a document change belongs to, when one stream carries several (assemble).
COLLECTION_HEADER = "tf-collection"
# A change captured from a database log: its transaction, its place in it from 1, and "1" on the transaction's last.
TX_ID_HEADER = "tf-tx-id"
TX_SEQ_HEADER = "tf-tx-seq"
TX_LAST_HEADER = "tf-tx-last"
ERROR_HEADER = "tf-error"
ERROR_REASONS_HEADER = "tf-error-reasons"
ORIGIN_TOPIC_HEADER = "tf-origin-topic"
ORIGIN_PARTITION_HEADER = "tf-origin-partition"
ORIGIN_OFFSET_HEADER = "tf-origin-offset"
ORIGIN_APP_HEADER = "tf-origin-app"


@dataclass(slots=True)
class Record:
    """`value` is bytes on the wire; apps may carry a decoded value between their own steps."""

    key: bytes | None
    value: Any
    headers: Headers = field(default_factory=dict)
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    timestamp_ms: int | None = None

    def header(self, name: str) -> bytes | None:
        return self.headers.get(name)

    def origin(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"
