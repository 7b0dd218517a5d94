"""A template collection read backwards: the rows of which tables one document is written back as.

The root row takes the document's column fields; an embedded object with a table is a referenced row (the album of
a track), upserted from the embedded fields, and its join gives the root its foreign key; an array is the child
rows of one table, replaced as a whole, each element also upserting the rows it joins (the artist of a credit) or,
when the element does not carry the joined row's key (a genre named only by its name), looking that row up by what
it does carry and creating it with the next id. An order column the elements do not carry (`ord`) gets the
element's 1-based position, which sorts them as the document lists them. Counts are derived and constants carry no
data, so both are left out; concatenations and coalesced values cannot be split back and are refused up front.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streams.errors import ConfigError
from streams.migration.template import CollectionTemplate, Field, Section

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ColumnWrite:
    """A document field (a path inside the element or object it belongs to) written into one column."""

    column: str
    path: tuple[str, ...]
    unmap: dict[Any, Any] | None = None  # the template's `map`, reversed

    @property
    def label(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class RowPlan:
    """A row of `table` the document refers to. With `lookup`, the document does not carry `key` (one integer
    column): the row is found by `columns` (unique there) and created with the next key when absent."""

    table: str
    key: tuple[str, ...]
    columns: tuple[ColumnWrite, ...]
    lookup: bool = False


@dataclass(frozen=True, slots=True)
class Link:
    """A referenced row and how its columns reach the row that refers to it: referring column ← referenced column."""

    row: RowPlan
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ArrayPlan:
    field: str
    table: str
    parent_column: str  # the child's column holding the root's key
    columns: tuple[ColumnWrite, ...]
    links: tuple[Link, ...]
    position_column: str | None
    scalar: bool  # elements are values (a `value` field), not objects


@dataclass(frozen=True, slots=True)
class WritePlan:
    collection: str
    table: str
    key: str
    version_column: str
    columns: tuple[ColumnWrite, ...]
    objects: tuple[Link, ...]
    arrays: tuple[ArrayPlan, ...]

    @property
    def tables(self) -> list[str]:
        """Every table written, referenced rows before the rows that refer to them."""
        names = [link.row.table for link in self.objects]
        for array in self.arrays:
            names += [link.row.table for link in array.links]
        names += [self.table] + [array.table for array in self.arrays]
        return list(dict.fromkeys(names))


def write_plan(collection: CollectionTemplate) -> WritePlan:
    """The inverse of `collection`; ConfigError names the first field that cannot be written back."""
    root = collection.root
    where = f"collection '{collection.name}'"
    if len(collection.version) != 1 or "." in collection.version[0]:
        raise ConfigError(f"{where}: writing documents back needs one version column of the root table "
                          f"(version: [updated_at]); the template has {list(collection.version) or 'none'}")
    if root.joins:
        raise ConfigError(f"{where}: lookups joined into the root ({', '.join(j.alias for j in root.joins)}) "
                          "cannot be written back")
    version = collection.version[0]
    columns: list[ColumnWrite] = []
    objects: list[Link] = []
    arrays: list[ArrayPlan] = []
    _collect(root.fields, root.alias, (), columns, objects, arrays, where)
    by_column = {write.column for write in columns}
    if collection.key in by_column:
        raise ConfigError(f"{where}: the key column '{collection.key}' is the document's _id, not a field")
    if version not in by_column:
        raise ConfigError(f"{where}: the version column '{version}' must be a field of the document")
    return WritePlan(collection.name, root.table, collection.key, version, tuple(columns), tuple(objects),
                     tuple(arrays))


def _collect(fields: Sequence[Field], alias: str, prefix: tuple[str, ...], columns: list[ColumnWrite],
             objects: list[Link], arrays: list[ArrayPlan], where: str) -> None:
    for item in fields:
        path = (*prefix, item.name)
        here = f"{where}, field '{'.'.join(path)}'"
        if item.kind in ("const", "count"):
            continue
        if item.kind == "column":
            columns.append(_column_write(item, alias, path, here))
        elif item.kind == "object":
            section = item.section
            assert section is not None
            if not section.table:
                _collect(section.fields, alias, path, columns, objects, arrays, where)
            elif prefix:
                raise ConfigError(f"{here}: an object with its own table inside another object cannot be written back")
            else:
                objects.append(_object(section, path, here))
        elif item.kind == "array":
            assert item.section is not None
            arrays.append(_array(item, item.section, here))
        else:
            raise ConfigError(f"{here}: a {item.kind} cannot be split back into columns; "
                              "map the columns as fields of their own to write documents back")


def _column_write(item: Field, alias: str, path: tuple[str, ...], here: str) -> ColumnWrite:
    assert item.column is not None
    owner, _, column = item.column.rpartition(".")
    if owner and owner != alias:
        raise ConfigError(f"{here}: '{item.column}' is a column of a joined table, which cannot be written back here")
    unmap = None
    if item.mapping is not None:
        unmap = {value: raw for raw, value in item.mapping.items()}
        if len(unmap) != len(item.mapping):
            raise ConfigError(f"{here}: its map sends two values to one, so it cannot be reversed")
    return ColumnWrite(column, path, unmap)


def _object(section: Section, path: tuple[str, ...], here: str) -> Link:
    writes: list[ColumnWrite] = []
    _collect(section.fields, section.alias, path, writes, [], [], here)
    own = {write.column for write in writes}
    missing = [column for column, _ in section.join if column not in own]
    if missing:
        raise ConfigError(f"{here}: the object must carry its join column(s) {missing} to be written back")
    key = tuple(column for column, _ in section.join)
    pairs = tuple((parent, column) for column, parent in section.join)
    return Link(RowPlan(section.table, key, tuple(writes)), pairs)


def _array(item: Field, section: Section, here: str) -> ArrayPlan:
    (child_column, _root_key), = section.join
    scalar = section.value is not None
    parts = (section.value,) if section.value is not None else section.fields
    own: list[ColumnWrite] = []
    joined: dict[str, list[ColumnWrite]] = {join.alias: [] for join in section.joins}
    for part in parts:
        if part.kind in ("const", "count"):
            continue
        if part.kind != "column" or part.column is None:
            raise ConfigError(f"{here}: element field '{part.name}' is a {part.kind}, which cannot be written back")
        owner, _, column = part.column.rpartition(".")
        path = () if scalar else (part.name,)
        if part.mapping is not None:
            raise ConfigError(f"{here}: element field '{part.name}' has a map, which arrays cannot reverse")
        if owner and owner != section.alias:
            if owner not in joined:
                raise ConfigError(f"{here}: '{part.column}' names no table joined into the array")
            joined[owner].append(ColumnWrite(column, path))
        else:
            own.append(ColumnWrite(column, path))
    carried = {write.column for write in own}
    links = []
    for join in section.joins:
        writes = joined[join.alias]
        if not writes:
            continue  # a join the document shows nothing of: its rows are not the document's to write
        key = tuple(column for column, _ in join.on)
        pairs = tuple((child, column) for column, child in join.on)
        lookup = not all(child in carried for _, child in join.on)
        if lookup and len(key) != 1:
            raise ConfigError(f"{here}: rows of '{join.table}' are found by {[w.column for w in writes]}; "
                              "that needs a one-column key")
        links.append(Link(RowPlan(join.table, key, tuple(writes), lookup), pairs))
    linked = {child for link in links for child, _ in link.pairs}
    positions = [order.column for order in section.order
                 if "." not in order.column and order.column not in carried and order.column not in linked]
    return ArrayPlan(item.name, section.table, child_column, tuple(own), tuple(links),
                     positions[0] if positions else None, scalar)


def field_value(document: Any, write: ColumnWrite) -> Any:
    """The value at the write's path (the element itself for a scalar array), reversed through its map."""
    value = document
    for part in write.path:
        value = value.get(part) if isinstance(value, dict) else None
    if write.unmap is not None and value is not None:
        value = write.unmap.get(value, value)
    return value
