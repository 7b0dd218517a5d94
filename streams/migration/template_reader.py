"""Reads a template's documents from the source, a key range at a time, by sort-merge (no query per document).

One query reads the root table (with its joined objects and lookups) in key order; one query per array or count
reads its child table ordered by the column that joins it to the key. The rows are merged in key order, so a
range of N documents costs a fixed number of queries whatever N is.
"""

from __future__ import annotations

import decimal
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Column, Connection, MetaData, Select, String, Table, and_, func, select
from sqlalchemy.sql import ColumnElement, FromClause

from streams.catalog.models import clean_text, timestamp_version
from streams.errors import RecordError
from streams.migration.template import CollectionTemplate, Field, OrderBy, Template

Document = dict[str, Any]
Getter = Callable[[Sequence[Any]], Any]


@dataclass(frozen=True, slots=True)
class KeyRange:
    """Keys in (after, upto]; None is open-ended. `keys` reads just those keys instead."""

    after: Any = None
    upto: Any = None
    keys: tuple[Any, ...] | None = None

    def where(self, column: ColumnElement[Any]) -> ColumnElement[bool] | None:
        if self.keys is not None:
            return column.in_(self.keys)
        clauses = []
        if self.after is not None:
            clauses.append(column > self.after)
        if self.upto is not None:
            clauses.append(column <= self.upto)
        return and_(*clauses) if clauses else None


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """A document read through the template; `error` (and no document) when its rows break the template."""

    key: Any
    version: int
    document: Document | None
    error: str | None = None


class _Query:
    """The select list of one query being compiled: each (alias, column) read once, at a known position."""

    def __init__(self, tables: dict[str, Table]) -> None:
        self._tables = tables
        self.aliases: dict[str, FromClause] = {}
        self.columns: list[ColumnElement[Any]] = []
        self._index: dict[tuple[str, str], int] = {}
        self.from_: FromClause | None = None

    def add_table(self, alias: str, table: str) -> FromClause:
        aliased = self._tables[table].alias(f"t{len(self.aliases)}")
        self.aliases[alias] = aliased
        if self.from_ is None:
            self.from_ = aliased
        return aliased

    def left_join(self, alias: str, table: str, on: Sequence[tuple[str, str]], owner: str) -> None:
        assert self.from_ is not None
        aliased = self.add_table(alias, table)
        condition = and_(*(aliased.c[own] == self.ref(parent, owner) for own, parent in on))
        self.from_ = self.from_.outerjoin(aliased, condition)

    def ref(self, ref: str, owner: str) -> ColumnElement[Any]:
        alias, _, column = ref.rpartition(".")
        return self.aliases[alias or owner].c[column]

    def position(self, ref: str, owner: str) -> int:
        alias, _, column = ref.rpartition(".")
        slot = (alias or owner, column)
        if slot not in self._index:
            self._index[slot] = len(self.columns)
            self.columns.append(self.ref(ref, owner))
        return self._index[slot]

    def select(self) -> Select[Any]:
        assert self.from_ is not None
        return select(*self.columns).select_from(self.from_)


class CollectionReader:
    """Documents of one template collection, compiled once against the source's reflected tables."""

    def __init__(self, collection: CollectionTemplate, template: Template, metadata: MetaData) -> None:
        self.collection = collection
        self._zone = template.timezone
        self._tables = metadata.tables
        root = collection.root
        self._root = _Query(dict(self._tables))
        self._root.add_table(root.alias, root.table)
        for join in root.joins:
            self._root.left_join(join.alias, join.table, join.on, root.alias)
        self.key_column: Column[Any] = self._tables[root.table].c[collection.key]
        key_at = self._root.position(collection.key, root.alias)
        self._key = itemgetter(key_at)
        self._children: list[tuple[Select[Any], Callable[[list[Sequence[Any]]], Any], ColumnElement[Any]]] = []
        self._child_names: list[str] = []
        self._version = self._version_getter(collection.version, root.alias)
        self._build = self._section(root.fields, root.alias, self._root, top=True)

    @property
    def tables(self) -> Mapping[str, Table]:
        """The source's reflected tables the reader was compiled against."""
        return self._tables

    # --- compiling ---------------------------------------------------------------------------------

    def _section(self, fields: Sequence[Field], owner: str, query: _Query, top: bool) -> Callable[..., Document]:
        plan: list[tuple[str, Getter | None, int]] = []
        for item in fields:
            if item.kind in ("array", "count"):
                assert top and item.section is not None
                plan.append((item.name, None, len(self._children)))
                self._children.append(self._child(item))
            else:
                plan.append((item.name, self._getter(item, owner, query), -1))
        if all(get is not None for _, get, _ in plan):
            getters = [(name, get) for name, get, _ in plan if get is not None]
            return lambda row, children=(): {name: get(row) for name, get in getters}

        def build(row: Sequence[Any], children: Sequence[Any] = ()) -> Document:
            # Fields read from the row get it; arrays and counts take the values merged from their cursors.
            return {name: children[index] if get is None else get(row) for name, get, index in plan}

        return build

    def _getter(self, item: Field, owner: str, query: _Query) -> Getter:
        if item.kind == "column":
            assert item.column is not None
            return _converted(itemgetter(query.position(item.column, owner)), item, self._zone,
                              self._column_of(query, item.column, owner))
        if item.kind == "const":
            value = item.const
            return lambda _row: value
        if item.kind == "concat":
            parts = [self._getter(part, owner, query) for part in item.parts]
            separator = item.separator

            def concat(row: Sequence[Any]) -> Any:
                values = [get(row) for get in parts]
                return None if any(v is None for v in values) else separator.join(map(str, values))

            return concat
        if item.kind == "coalesce":
            parts = [self._getter(part, owner, query) for part in item.parts]
            return lambda row: next((v for v in (get(row) for get in parts) if v is not None), None)
        assert item.kind == "object" and item.section is not None
        section = item.section
        if not section.table:
            inner = self._section(section.fields, owner, query, top=False)
            return lambda row: inner(row)
        query.left_join(section.alias, section.table, section.join, owner)
        present = itemgetter(query.position(f"{section.alias}.{section.join[0][0]}", section.alias))
        inner = self._section(section.fields, section.alias, query, top=False)
        return lambda row: None if present(row) is None else inner(row)

    def _column_of(self, query: _Query, ref: str, owner: str) -> ColumnElement[Any]:
        return query.ref(ref, owner)

    def _child(self, item: Field) -> tuple[Select[Any], Callable[[list[Sequence[Any]]], Any], ColumnElement[Any]]:
        section = item.section
        assert section is not None
        query = _Query(dict(self._tables))
        child = query.add_table(section.alias, section.table)
        join_column = child.c[section.join[0][0]]
        if item.kind == "count":
            statement = select(join_column, func.count()).select_from(child).group_by(join_column)
            return statement, lambda rows: rows[0][1] if rows else 0, join_column
        query.position(f"{section.alias}.{section.join[0][0]}", section.alias)
        for join in section.joins:
            query.left_join(join.alias, join.table, join.on, section.alias)
        if section.value is not None:
            element: Callable[..., Any] = self._getter(section.value, section.alias, query)
        else:
            element = self._section(section.fields, section.alias, query, top=False)
        sort = _sort_key(section.order, section.alias, query)
        distinct = section.distinct

        def assemble(rows: list[Sequence[Any]]) -> Any:
            if sort is not None and len(rows) > 1:
                rows = sorted(rows, key=sort)
            values = [element(row) for row in rows]
            if distinct:
                values = _unique(values)
            return values

        return query.select(), assemble, join_column

    def _version_getter(self, columns: Sequence[str], owner: str) -> Getter:
        getters = [itemgetter(self._root.position(column, owner)) for column in columns]
        zone = self._zone

        def version(row: Sequence[Any]) -> int:
            best = 0
            for get in getters:
                value = get(row)
                if isinstance(value, datetime):
                    value = timestamp_version(_aware(value, zone))
                elif isinstance(value, date):
                    value = timestamp_version(datetime(value.year, value.month, value.day, tzinfo=zone))
                if isinstance(value, int) and value > best:
                    best = value
            return best

        return version

    # --- reading -----------------------------------------------------------------------------------

    def key_order(self, conn: Connection) -> ColumnElement[Any]:
        """The root key as ranges and orders compare it: text by code point, as Python and MongoDB do."""
        return binary_order(self.key_column, conn.dialect.name)

    def read(self, conn: Connection, keys: KeyRange) -> Iterator[SourceDocument]:
        """The documents of `keys`, in key order; a row that breaks the template raises RecordError."""
        dialect = conn.dialect.name
        key = binary_order(self._root.aliases[self.collection.root.alias].c[self.collection.key], dialect)
        root = self._root.select()
        where = keys.where(key)
        root_rows = conn.execute((root if where is None else root.where(where)).order_by(key)).fetchall()
        children = []
        for statement, assemble, join_column in self._children:
            child_key = binary_order(join_column, dialect)
            child_where = keys.where(child_key)
            selected = statement if child_where is None else statement.where(child_where)
            rows = conn.execute(selected.order_by(child_key)).fetchall()
            children.append((itertools.groupby(rows, key=itemgetter(0)), assemble))
        yield from self._merge(root_rows, children)

    def _merge(self, root_rows: Sequence[Sequence[Any]], children: list[tuple[Any, Any]]) -> Iterator[SourceDocument]:
        heads: list[tuple[Any, list[Sequence[Any]]] | None] = [_next_group(groups) for groups, _ in children]
        get_key, build, version = self._key, self._build, self._version
        for row in root_rows:
            key = get_key(row)
            values = []
            for index, (groups, assemble) in enumerate(children):
                head = heads[index]
                while head is not None and head[0] < key:  # rows of keys outside the root (orphans)
                    head = _next_group(groups)
                if head is not None and head[0] == key:
                    values.append(assemble(head[1]))
                    head = _next_group(groups)
                else:
                    values.append(assemble([]))
                heads[index] = head
            document = {"_id": key}
            try:
                document.update(build(row, values))
            except RecordError as exc:
                yield SourceDocument(key=key, version=version(row), document=None, error=str(exc))
                continue
            yield SourceDocument(key=key, version=version(row), document=document)


_BINARY_COLLATIONS = {"postgresql": "C", "mysql": "utf8mb4_bin", "mariadb": "utf8mb4_bin"}


def binary_order(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """Text keys compared by code point (Python's and MongoDB's order), whatever the column's collation.

    The merge of key-ordered cursors and the range comparisons with the target rely on one order everywhere.
    """
    collation = _BINARY_COLLATIONS.get(dialect)
    if collation is None or not isinstance(column.type, String):
        return column
    return column.collate(collation)


def _next_group(groups: Iterator[tuple[Any, Iterator[Sequence[Any]]]]) -> tuple[Any, list[Sequence[Any]]] | None:
    item = next(groups, None)
    return None if item is None else (item[0], list(item[1]))


def _unique(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _sort_key(order: Sequence[OrderBy], owner: str, query: _Query) -> Callable[[Sequence[Any]], Any] | None:
    """Element order computed in Python, the same on every engine whatever its collation."""
    if not order:
        return None
    parts: list[Callable[[Sequence[Any]], Any]] = []
    for item in order:
        nullable = bool(getattr(query.ref(item.column, owner), "nullable", True))
        parts.append(_order_part(item, itemgetter(query.position(item.column, owner)), nullable))
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda row: (first(row), second(row))
    if len(parts) == 3:
        one, two, three = parts
        return lambda row: (one(row), two(row), three(row))
    return lambda row: tuple(part(row) for part in parts)


def _order_part(item: OrderBy, get: Getter, nullable: bool) -> Callable[[Sequence[Any]], Any]:
    if item.rank is not None:
        ranks = {value: rank for rank, value in enumerate(item.rank)}
        last = len(ranks)
        return lambda row: ranks.get(get(row), last)
    if item.descending:
        return lambda row: _Descending(_nulls_first(get(row)))
    if not nullable:
        return get
    return lambda row: _nulls_first(get(row))


def _nulls_first(value: Any) -> tuple[bool, Any]:
    return (False, 0) if value is None else (True, value)


class _Descending:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Descending) -> bool:
        return bool(self.value > other.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)


# --- conversions -------------------------------------------------------------------------------------


def _aware(value: datetime, zone: ZoneInfo) -> datetime:
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def iso_utc(value: datetime, zone: ZoneInfo) -> str:
    """A timestamp as ISO-8601 in UTC with `Z`, a fraction as 6 digits (as the catalog's documents spell it)."""
    if value.tzinfo is not None or zone.key != "UTC":
        value = _aware(value, zone).astimezone(UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


def plain_value(value: Any, zone: ZoneInfo) -> Any:
    """A column value as a document holds it: timestamps in UTC, dates ISO, decimals as exact strings."""
    if isinstance(value, datetime):
        return iso_utc(value, zone)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "t", "true", "y", "yes")
    return bool(value)


def _converter(name: str | None, zone: ZoneInfo) -> Callable[[Any], Any]:
    if name is None:
        return lambda value: plain_value(value, zone)
    if name == "timestamp":
        return lambda value: iso_utc(value, zone) if isinstance(value, datetime) else plain_value(value, zone)
    simple: dict[str, Callable[[Any], Any]] = {
        "bool": _bool,
        "int": int,
        "float": float,
        "string": lambda value: str(plain_value(value, zone)),
        "text": clean_text,
        "optional_text": lambda value: clean_text(value) or None,
        "upper": str.upper,
        "lower": str.lower,
        "trim": str.strip,
        "date": lambda value: (value.date() if isinstance(value, datetime) else value).isoformat(),
    }
    return simple[name]


def _converted(get: Getter, item: Field, zone: ZoneInfo, column: ColumnElement[Any]) -> Getter:
    mapping, allowed, default = item.mapping, item.enum, item.default
    if item.convert is None and not _may_need_plain(column):
        convert: Callable[[Any], Any] | None = None
    else:
        convert = _converter(item.convert, zone)
    if mapping is None and allowed is None and default is None:
        if convert is None:
            return get
        plain_convert = convert

        def converted(row: Sequence[Any]) -> Any:
            raw = get(row)
            return None if raw is None else plain_convert(raw)

        return converted
    label = f"column {item.column}"
    members = frozenset(allowed) if allowed is not None else None

    def value(row: Sequence[Any]) -> Any:
        raw = get(row)
        if raw is None:
            return default
        if mapping is not None:
            raw = mapping.get(raw, raw)
        if convert is not None:
            raw = convert(raw)
        if members is not None and raw not in members:
            raise RecordError(f"{item.name}: {label} is {raw!r}, not one of {list(allowed or ())}",
                              [{"field": item.name, "message": f"{raw!r} is not one of {list(allowed or ())}"}])
        return raw

    return value


def _may_need_plain(column: ColumnElement[Any]) -> bool:
    """Whether values of this column may be something a document cannot hold as read (dates, decimals, bytes)."""
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return True
    return python_type not in (int, str, bool, float)
