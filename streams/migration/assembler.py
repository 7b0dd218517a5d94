"""Row changes in, document changes out: re-read from the source, through the template, every document a batch of
CDC row changes touched, versioned by the highest change-log position among the changes that touched it.

Why this converges whatever order changes arrive in (across partitions, with redeliveries): a document's content
depends on a set of rows; the last commit C that touches that set (before or after its own images) has the highest
version v of every change that leads to the document. Its change is processed after C is visible (the read waits
until it is), so that read sees every row the document depends on exactly as it finally stands, and writes it at v.
Any other read of the document carries a lower version (a change that reached it through links that a later commit
made or broke carries that commit's lower-or-equal version), so the guarded store keeps the read at v. A document
whose root row is gone when read becomes a tombstone at the triggering version. A truncate of a table re-reads
every document of each collection that uses it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select

from streams.catalog.dburl import dialect_kind
from streams.errors import ConfigError, TransientError
from streams.migration.embedding import EmbeddingPaths
from streams.migration.snapshot import binlog_snapshot_version
from streams.migration.source import BoundTemplate
from streams.migration.template_reader import CollectionReader, KeyRange
from streams.records import VERSION_HEADER, Record

KEYS_PER_READ = 1000
TRUNCATE = "t"


@dataclass(frozen=True, slots=True)
class RowChange:
    """One CDC record as assemble needs it."""

    op: str
    table: str
    images: tuple[dict[str, Any], ...]  # `before` and `after`, those present (with the record key's columns)
    version: int
    txid: int | None  # PostgreSQL's transaction id (visibility check); None otherwise


@dataclass(frozen=True, slots=True)
class DocumentChange:
    collection: str
    key: Any
    version: int
    document: dict[str, Any] | None  # None: a tombstone


@dataclass
class AssembleResult:
    changes: list[DocumentChange] = field(default_factory=list)
    errors: list[tuple[str, Any, str]] = field(default_factory=list)  # (collection, key, reason)
    unsupported: list[tuple[int, str]] = field(default_factory=list)  # (index of the change, reason)


def parse_change(record: Record) -> RowChange:
    """The row change of a `cdc-postgres` / `cdc-mysql` record; ValueError says what is missing."""
    try:
        value = orjson.loads(record.value)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"value is not JSON: {exc}") from None
    if not isinstance(value, dict) or not isinstance(value.get("table"), str) or "op" not in value:
        raise ValueError("not a row change: needs 'op' and 'table' (the records cdc-postgres and cdc-mysql emit)")
    header = record.headers.get(VERSION_HEADER)
    if header is None:
        raise ValueError(f"no {VERSION_HEADER} header: a row change needs its change-log position")
    try:
        version = int(header)
    except ValueError:
        raise ValueError(f"header {VERSION_HEADER} is not an integer: {header!r}") from None
    key = value.get("key") or {}
    images = tuple({**key, **image} for image in (value.get("before"), value.get("after")) if isinstance(image, dict))
    if not images and key:
        images = (dict(key),)
    source = value.get("source") or {}
    txid = source.get("txid")
    table = value["table"].rpartition(".")[2]  # `schema.table` names the same table as the template
    return RowChange(str(value["op"]), table, images, version, txid if isinstance(txid, int) else None)


class Assembler:
    """Compiled once per template and source; `assemble` turns a batch of row changes into document changes."""

    def __init__(self, engine: Engine, bound: BoundTemplate, keys_per_read: int = KEYS_PER_READ,
                 visible_timeout_s: float = 30.0) -> None:
        self.engine = engine
        self.kind = dialect_kind(engine)
        self.readers = bound.readers
        self.paths = {name: EmbeddingPaths(reader.collection, reader.tables) for name, reader in bound.readers.items()}
        self.keys_per_read = keys_per_read
        self.visible_timeout_s = visible_timeout_s

    @property
    def tables(self) -> set[str]:
        return set().union(*(paths.tables for paths in self.paths.values()))

    def assemble(self, changes: Sequence[RowChange]) -> AssembleResult:
        result = AssembleResult()
        relevant = [change for change in changes if change.table in self.tables]
        if not relevant:
            return result
        with self.session(relevant) as conn:
            for name, paths in self.paths.items():
                reader = self.readers[name]
                truncated = [(i, c) for i, c in enumerate(changes) if c.op == TRUNCATE and c.table in paths.tables]
                if truncated:
                    version = max(change.version for _, change in truncated)
                    for index, change in truncated:
                        if change.table == paths.root.table:
                            result.unsupported.append((index, _root_truncate_reason(change.table, name)))
                    self._read_all(conn, reader, version, result)
                    continue
                rows = [(c.table, c.images, c.version) for c in relevant
                        if c.op != TRUNCATE and c.table in paths.tables]
                if rows:
                    self._read_keys(conn, reader, paths.roots(conn, rows), result)
        return result

    # --- reading -----------------------------------------------------------------------------------

    def _read_keys(self, conn: Connection, reader: CollectionReader, versions: dict[Any, int],
                   result: AssembleResult) -> None:
        name = reader.collection.name
        keys = sorted(versions, key=_sortable)
        for start in range(0, len(keys), self.keys_per_read):
            chunk = keys[start:start + self.keys_per_read]
            seen = set()
            for item in reader.read(conn, KeyRange(keys=tuple(chunk))):
                seen.add(item.key)
                if item.document is None:
                    result.errors.append((name, item.key, item.error or "rejected"))
                else:
                    result.changes.append(DocumentChange(name, item.key, versions[item.key], item.document))
            result.changes.extend(DocumentChange(name, key, versions[key], None) for key in chunk if key not in seen)

    def _read_all(self, conn: Connection, reader: CollectionReader, version: int, result: AssembleResult) -> None:
        key = reader.key_order(conn)
        after: Any = None
        while True:
            query = select(reader.key_column).order_by(key).limit(self.keys_per_read)
            keys = conn.execute(query if after is None else query.where(key > after)).scalars().all()
            if not keys:
                return
            self._read_keys(conn, reader, dict.fromkeys(keys, version), result)
            after = keys[-1]

    # --- visibility --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def session(self, changes: Sequence[RowChange]) -> Iterator[Connection]:
        """A read transaction that sees every change of the batch committed.

        A change log may hand out a transaction before other sessions can see it (PostgreSQL removes it from the
        running transactions after its commit record is flushed; MariaDB commits in InnoDB after the binlog write),
        so the read waits for a snapshot that holds them all.
        """
        deadline = time.monotonic() + self.visible_timeout_s
        while True:
            with self.engine.connect() as conn:
                if self.kind == "postgresql":
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                    with conn.begin():
                        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                        if _pg_sees(conn, [c.txid for c in changes if c.txid is not None]):
                            yield conn
                            return
                elif self.kind == "mysql":
                    with conn.begin():
                        conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                        position = binlog_snapshot_version(conn)
                        if position is None or position >= max(c.version for c in changes):
                            yield conn
                            return
                else:
                    with conn.begin():
                        yield conn
                        return
            if time.monotonic() > deadline:
                raise TransientError(f"the source does not show the batch's changes committed after "
                                     f"{self.visible_timeout_s:.0f}s (up to version {max(c.version for c in changes)})")
            time.sleep(0.005)


def _pg_sees(conn: Connection, txids: list[int]) -> bool:
    """Whether this transaction's snapshot sees the (32-bit) transaction ids, known to have committed."""
    if not txids:
        return True
    text = conn.exec_driver_sql("SELECT pg_current_snapshot()::text").scalar_one()
    _xmin, xmax_text, xip_text = str(text).split(":")
    xmax = int(xmax_text)
    running = {int(x) for x in xip_text.split(",") if x}
    for txid in set(txids):
        full = (xmax & ~0xFFFFFFFF) | (txid & 0xFFFFFFFF)
        if full >= xmax:
            full -= 1 << 32
        if full >= xmax or full in running:
            return False
    return True


def _root_truncate_reason(table: str, collection: str) -> str:
    return (f"truncate of '{table}', the root table of '{collection}': the documents whose rows it removed cannot be "
            "named from the change log, so they stay in the target; documents still at the source were re-read. "
            "Remove the rest with a new `tuneflow migrate start` into an emptied collection, or find them with "
            "`tuneflow verify`")


def _sortable(key: Any) -> tuple[int, Any]:
    return (0, key) if isinstance(key, int) else (1, str(key))


def check_replica_identity(engine: Engine, assembler: Assembler) -> None:
    """PostgreSQL sends the old row of an update or delete whole only under REPLICA IDENTITY FULL. A table that ties
    its rows to documents by columns outside its primary key needs it, or a row moving to another parent (a track
    to another album) would not rebuild the document it left. ConfigError naming the fix."""
    if assembler.kind != "postgresql":
        return
    needed: dict[str, set[str]] = {}
    for paths in assembler.paths.values():
        for table, columns in paths.link_columns().items():
            needed.setdefault(table, set()).update(columns)
    missing = []
    with engine.connect() as conn:
        for table, columns in sorted(needed.items()):
            identity, key_columns = conn.exec_driver_sql(
                "SELECT c.relreplident, coalesce(array_agg(a.attname::text) FILTER (WHERE a.attname IS NOT NULL), "
                "'{}') FROM pg_class c LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary "
                "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
                "WHERE c.oid = to_regclass(%(t)s) GROUP BY c.relreplident", {"t": table}).one()
            if identity != "f" and not columns <= set(key_columns):
                missing.append(table)
    if missing:
        fix = "; ".join(f"ALTER TABLE {table} REPLICA IDENTITY FULL" for table in missing)
        raise ConfigError(f"assemble needs the whole old row of updates and deletes of {', '.join(missing)} (they "
                          f"tie rows to documents by columns outside the primary key): run `{fix}` at the source")
