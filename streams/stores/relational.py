"""The relational document store: documents of a template collection written back into their tables, and read.

Each document is one transaction: the root row (version-guarded in SQL), the referenced rows its embedded objects
and array elements name, and its child rows (replaced). Every transaction is marked first as the pipeline's own
(streams/cdc/origin.py) so that CDC of the same database drops it instead of echoing it back. Documents of a batch
are written by several connections at once (each key once per batch, so they never race each other).

Versions are those of the template's version column (the catalog's `updated_at`): an upsert is applied only when
its version is newer than the stored row's (`UPDATE … WHERE updated_at < :new`, or an insert when the row is
absent). The tables have no tombstone column, so a delete leaves its version in the `tuneflow_tombstone` table: a
late upsert older than that delete finds it and is dropped as stale instead of bringing the row back; a newer one
inserts the row and clears the tombstone. A delete's version (`Change.version`) is read as a timestamp version
(microseconds since the epoch, as the sinks derive it from `updated_at`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    and_,
    exists,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from streams.catalog.dburl import credentials_refused, dialect_kind, error_reason, make_engine, mask_password
from streams.cdc.origin import ORIGIN_PREFIX, ORIGIN_TABLE
from streams.errors import ConfigError, ServiceUnavailableError, TransientError
from streams.migration.inverse import RowPlan, WritePlan, write_plan
from streams.migration.template import Template, check_against
from streams.migration.template_reader import CollectionReader, KeyRange
from streams.stores.base import VERSION_FIELD, ApplyResult, Change, newest_per_key
from streams.stores.column_values import version_number, version_value
from streams.stores.document_rows import (
    DocumentRows,
    Reasons,
    Refused,
    check_columns,
    read_tables,
    rows_of,
    unique_rows,
)

Document = dict[str, Any]
Row = dict[str, Any]

TOMBSTONE_TABLE = "tuneflow_tombstone"
_bookkeeping = MetaData()
origin_table = Table(ORIGIN_TABLE, _bookkeeping, Column("writer", String(100), primary_key=True),
                     Column("n", BigInteger, nullable=False), mysql_engine="InnoDB")
tombstone_table = Table(TOMBSTONE_TABLE, _bookkeeping, Column("collection", String(63), primary_key=True),
                        Column("doc_key", String(200), primary_key=True),
                        Column("version", BigInteger, nullable=False), mysql_engine="InnoDB")

DEFAULT_WRITERS = 4
TRANSACTION_ATTEMPTS = 5
# Deadlocks, serialization failures and lock-wait timeouts (PostgreSQL SQLSTATE, MySQL/MariaDB error numbers):
# the transaction is tried again; connection failures are the harness's to retry.
_RETRY_SQLSTATES = ("40P01", "40001", "55P03")
_RETRY_MYSQL = (1205, 1213)


class _TryAgain(Exception):
    """Another transaction got in the way (a deadlock, a row created at the same moment)."""


Outcome = Literal["applied", "stale"]


@dataclass
class _Bound:
    """One collection's write plan bound to the reflected tables, and its reader."""

    plan: WritePlan
    tables: dict[str, Table]
    reader: CollectionReader
    lookups: dict[tuple[str, tuple[Any, ...]], Any] = field(default_factory=dict)  # (table, values) -> key
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def root(self) -> Table:
        return self.tables[self.plan.table]


class RelationalStore:
    """A DocumentStore over the tables a template maps (PostgreSQL, MariaDB/MySQL, SQLite)."""

    def __init__(self, url: str, template: Template, writer: str = "tuneflow", writers: int | None = None,
                 engine: Engine | None = None) -> None:
        self.where = mask_password(url)
        self._url = url
        self._template = template
        self._writer = writer[:100]
        self.engine = engine or make_engine(url)
        self.kind = dialect_kind(self.engine)
        self.writers = 1 if self.kind == "sqlite" else (writers or DEFAULT_WRITERS)
        self._bound: dict[str, _Bound] = {}
        self._metadata = MetaData()
        self._pool: ThreadPoolExecutor | None = None
        self.collections: list[str] | None = None  # what `open()` binds when not told

    # -- set-up ------------------------------------------------------------------------------------------------

    def open(self, collections: list[str] | None = None) -> None:
        """Check the template against the live schema, reflect its tables, create the bookkeeping tables."""
        chosen = self._template.select(collections or self.collections)
        plans = [write_plan(collection) for collection in chosen]
        with self._errors("open"), self.engine.begin() as conn:
            check_against(self._template, conn, [c.name for c in chosen])
            wanted = sorted({t for plan in plans for t in plan.tables} | read_tables(chosen))
            self._metadata.reflect(conn, only=wanted)
            bookkeeping = [tombstone_table] + ([origin_table] if self.kind == "mysql" else [])
            _bookkeeping.create_all(conn, tables=bookkeeping, checkfirst=True)
        for collection, plan in zip(chosen, plans, strict=True):
            tables = {name: self._metadata.tables[name] for name in plan.tables}
            check_columns(plan, tables)
            reader = CollectionReader(collection, self._template, self._metadata)
            self._bound[collection.name] = _Bound(plan, tables, reader)

    def _collection(self, name: str) -> _Bound:
        if name not in self._bound:
            self.open([*self._bound, name])
        return self._bound[name]

    # -- writing -----------------------------------------------------------------------------------------------

    def apply(self, collection: str, changes: Sequence[Change]) -> ApplyResult:
        """Each document in its own transaction, several at once; values that do not fit are `rejected`."""
        bound = self._collection(collection)
        newest = newest_per_key(changes)
        if self.writers == 1 or len(newest) == 1:
            outcomes = [self._apply_one(bound, change) for change in newest]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.writers, thread_name_prefix="tuneflow-rdbms")
            outcomes = list(self._pool.map(lambda change: self._apply_one(bound, change), newest))
        transient = [outcome for outcome in outcomes if isinstance(outcome, TransientError)]
        if transient:
            raise transient[0]
        rejected = {change.key: outcome for change, outcome in zip(newest, outcomes, strict=True)
                    if isinstance(outcome, list)}
        applied = sum(1 for outcome in outcomes if outcome == "applied")
        return ApplyResult(applied=applied, stale=len(changes) - applied - len(rejected), rejected=rejected)

    def misfits(self, collection: str, changes: Sequence[Change]) -> dict[Any, Reasons]:
        """The documents whose values do not fit their columns, by key, with the reasons (no database call)."""
        bound = self._collection(collection)
        found: dict[Any, Reasons] = {}
        for change in changes:
            if change.document is not None:
                try:
                    rows_of(bound.plan, bound.tables, change.key, change.document, self._template.timezone.key)
                except Refused as refused:
                    found[change.key] = refused.reasons
        return found

    def _apply_one(self, bound: _Bound, change: Change) -> Outcome | Reasons | TransientError:
        try:
            rows = None if change.document is None else rows_of(bound.plan, bound.tables, change.key, change.document,
                                                                   self._template.timezone.key)
        except Refused as refused:
            return refused.reasons
        for attempt in range(TRANSACTION_ATTEMPTS):
            created: dict[tuple[str, tuple[Any, ...]], Any] = {}
            try:
                with self._errors(f"write {bound.plan.collection}"), self.engine.begin() as conn:
                    self._mark(conn)
                    if rows is None:
                        outcome = self._delete(conn, bound, change)
                    else:
                        outcome = self._upsert(conn, bound, change, rows, created)
                with bound.lock:
                    bound.lookups.update(created)
                return outcome
            except _TryAgain:
                if attempt + 1 == TRANSACTION_ATTEMPTS:
                    return TransientError(f"{bound.plan.collection} key {change.key!r} kept colliding with "
                                          "concurrent transactions; the batch will be written again")
            except Refused as refused:
                return refused.reasons
            except TransientError as exc:
                return exc
        raise AssertionError("unreachable")

    def _mark(self, conn: Connection) -> None:
        """The first statement of every transaction: CDC of this database drops what follows."""
        if self.kind == "postgresql":
            conn.execute(text("SELECT pg_logical_emit_message(true, :prefix, :writer)"),
                         {"prefix": ORIGIN_PREFIX, "writer": self._writer})
        elif self.kind == "mysql":
            statement = mysql.insert(origin_table).values(writer=self._writer, n=1)
            conn.execute(statement.on_duplicate_key_update(n=origin_table.c.n + 1))

    def _upsert(self, conn: Connection, bound: _Bound, change: Change, rows: DocumentRows,
                created: dict[tuple[str, tuple[Any, ...]], Any]) -> Outcome:
        plan, root = bound.plan, bound.root
        key_column, version_column = root.c[plan.key], root.c[plan.version_column]
        new = rows.root[plan.version_column]
        claimed = conn.execute(root.update().where(key_column == change.key, version_column < new)
                               .values({plan.version_column: new})).rowcount
        fresh = not claimed
        if fresh:
            tombstones = tombstone_table.c
            blocked = conn.execute(select(1).where(or_(
                exists().where(key_column == change.key),
                exists().where(tombstones.collection == plan.collection, tombstones.doc_key == str(change.key),
                               tombstones.version >= version_number(new, self._template.timezone.key))))).first()
            if blocked is not None:
                return "stale"
        for row_plan, row in rows.references:
            self._upsert_reference(conn, bound.tables[row_plan.table], row_plan, row, plan.version_column, new)
        for row_plan, row, targets in rows.lookups:
            found = self._look_up(conn, bound, row_plan, row, created)
            for target, column in targets:
                target[column] = found
        if fresh:
            try:
                with conn.begin_nested():
                    conn.execute(root.insert().values({**rows.root, plan.key: change.key}))
            except IntegrityError as exc:
                if conn.execute(select(1).where(key_column == change.key)).first() is not None:
                    raise _TryAgain from exc  # inserted by another writer meanwhile: look again
                raise
            conn.execute(tombstone_table.delete().where(tombstone_table.c.collection == plan.collection,
                                                        tombstone_table.c.doc_key == str(change.key)))
        else:
            conn.execute(root.update().where(key_column == change.key).values(rows.root))
        for array in plan.arrays:
            child = bound.tables[array.table]
            if not fresh:
                conn.execute(child.delete().where(child.c[array.parent_column] == change.key))
            children = unique_rows(rows.children[array.field])
            if children:
                conn.execute(child.insert(), children)
        return "applied"

    def _upsert_reference(self, conn: Connection, table: Table, row_plan: RowPlan, row: Row, version_column: str,
                          version: Any) -> None:
        """Insert the referenced row if absent; update it from the embedded copy when that differs from it, unless
        the row is newer. An unchanged row keeps its version: the documents built from it stay as they are."""
        where = and_(*(table.c[column] == row[column] for column in row_plan.key))
        content = {name: value for name, value in row.items() if name not in row_plan.key}
        values = dict(row)
        guard = None
        if version_column in table.c and version_column not in values:
            values[version_column] = version
            guard = table.c[version_column] < version
        changes = {name: value for name, value in values.items() if name not in row_plan.key}
        if content:
            differs = or_(*(table.c[name].is_distinct_from(value) for name, value in content.items()))
            statement = table.update().where(and_(where, differs) if guard is None else and_(where, guard, differs)) \
                .values(changes)
            if conn.execute(statement).rowcount:
                return
        conn.execute(self._insert_if_absent(table, values))

    def _insert_if_absent(self, table: Table, values: Row) -> Any:
        if self.kind == "postgresql":
            return postgresql.insert(table).values(values).on_conflict_do_nothing()
        if self.kind == "sqlite":
            return sqlite.insert(table).values(values).on_conflict_do_nothing()
        first = next(iter(table.primary_key.columns)).name
        return mysql.insert(table).values(values).on_duplicate_key_update({first: table.c[first]})

    def _look_up(self, conn: Connection, bound: _Bound, row_plan: RowPlan, row: Row,
                 created: dict[tuple[str, tuple[Any, ...]], Any]) -> Any:
        """The key of the row holding these values (unique there), created with the next key when absent."""
        table = bound.tables[row_plan.table]
        names = sorted(row)
        cache_key = (row_plan.table, tuple(row[name] for name in names))
        with bound.lock:
            if cache_key in bound.lookups:
                return bound.lookups[cache_key]
        if cache_key in created:
            return created[cache_key]
        (key_name,) = row_plan.key
        key_column = table.c[key_name]
        found = conn.execute(select(key_column).where(*(table.c[n] == row[n] for n in names))).first()
        if found is not None:
            with bound.lock:
                bound.lookups[cache_key] = found[0]
            return found[0]
        next_key = conn.execute(select(func.coalesce(func.max(key_column), 0) + 1)).scalar_one()
        try:
            with conn.begin_nested():
                conn.execute(table.insert().values({**row, key_name: next_key}))
        except IntegrityError as exc:
            raise _TryAgain from exc  # another transaction created it (or took that key) at the same moment
        created[cache_key] = next_key
        return next_key

    def _delete(self, conn: Connection, bound: _Bound, change: Change) -> Outcome:
        plan, root = bound.plan, bound.root
        zone = self._template.timezone.key
        version = version_value(change.version, root.c[plan.version_column], zone)
        key_column = root.c[plan.key]
        older = conn.execute(select(1).where(key_column == change.key, root.c[plan.version_column] < version)
                             .with_for_update()).first()
        if older is None and conn.execute(select(1).where(key_column == change.key)).first() is not None:
            return "stale"  # the stored row is newer than the delete
        if older is not None:
            for array in plan.arrays:
                child = bound.tables[array.table]
                conn.execute(child.delete().where(child.c[array.parent_column] == change.key))
            conn.execute(root.delete().where(key_column == change.key))
        number = version_number(version, zone)
        tombstones = tombstone_table.c
        where = and_(tombstones.collection == plan.collection, tombstones.doc_key == str(change.key))
        if not conn.execute(tombstone_table.update().where(where, tombstones.version < number)
                            .values(version=number)).rowcount:
            conn.execute(self._insert_if_absent(tombstone_table, {
                "collection": plan.collection, "doc_key": str(change.key), "version": number}))
        return "applied" if older is not None else "stale"

    # -- reading -----------------------------------------------------------------------------------------------

    def get_many(self, collection: str, keys: Sequence[Any]) -> dict[Any, Document]:
        bound = self._collection(collection)
        wanted = tuple(dict.fromkeys(keys))
        if not wanted:
            return {}
        with self._errors(f"read {collection}"), self.engine.connect() as conn:
            return {d.key: {**d.document, VERSION_FIELD: d.version}
                    for d in bound.reader.read(conn, KeyRange(keys=wanted)) if d.document is not None}

    def count(self, collection: str) -> int:
        root = self._collection(collection).root
        with self._errors(f"count {collection}"), self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(root)).scalar_one())

    def scan(self, collection: str, batch_size: int = 1000) -> Iterator[list[Document]]:
        return self.scan_range(collection, None, None, batch_size)

    def scan_range(self, collection: str, after: Any, upto: Any, batch_size: int = 1000) -> Iterator[list[Document]]:
        bound = self._collection(collection)
        key = bound.root.c[bound.plan.key]
        while True:
            with self._errors(f"read {collection}"), self.engine.connect() as conn:
                where = KeyRange(after, upto).where(key)
                query = select(key).order_by(key).limit(batch_size)
                keys = tuple(conn.execute(query if where is None else query.where(where)).scalars())
                if not keys:
                    return
                documents = [{**d.document, VERSION_FIELD: d.version}
                             for d in bound.reader.read(conn, KeyRange(keys=keys)) if d.document is not None]
            yield documents
            after = keys[-1]

    def scan_since(self, collection: str, version: int, batch_size: int = 1000) -> Iterator[list[Document]]:
        for documents in self.scan(collection, batch_size):
            newer = [document for document in documents if document[VERSION_FIELD] > version]
            if newer:
                yield newer

    def drop(self, collection: str) -> None:
        raise ConfigError("the relational store does not drop the tables of a template collection")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.engine.dispose()

    # -- errors ------------------------------------------------------------------------------------------------

    def _errors(self, action: str) -> _Translated:
        return _Translated(self, action)


class _Translated:
    """Database errors as tuneflow errors: a value that does not fit rejects the document, a collision is tried
    again, a lost server is transient, anything else about the database is not the records' fault."""

    def __init__(self, store: RelationalStore, action: str) -> None:
        self.store, self.action = store, action

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, _tb: Any) -> bool:
        if not isinstance(exc, DBAPIError):
            return False
        original = getattr(exc, "orig", None)
        code = getattr(original, "pgcode", None)
        number = original.args[0] if original is not None and original.args else None
        reason = error_reason(exc, self.store._url)
        where = self.store.where
        if code in _RETRY_SQLSTATES or number in _RETRY_MYSQL:
            raise _TryAgain from exc
        if credentials_refused(exc):
            raise ConfigError(f"the database at {where} refused the credentials: {reason}") from None
        if exc.connection_invalidated or isinstance(exc, OperationalError):
            raise TransientError(f"the database at {where} could not {self.action} for now: {reason}") from None
        if isinstance(exc, IntegrityError | DataError):
            raise Refused([{"field": "", "message": f"the database refused the document: {reason}"}]) from None
        raise ServiceUnavailableError(f"the database at {where} failed to {self.action}: {reason}") from None
