"""Which documents a row embeds into: a template's join paths walked backwards, from any table it reads to the key.

Every table a collection reads is a node linked to its parent by columns (an array's child table by the column
that holds the key; a joined object or lookup by its own columns equal to columns of the section that joins it). A
changed row's link columns (from its `before` and `after` images) lead to its parent's rows, hop by hop, up to the
root keys: one query per hop for a whole batch of rows, none when a hop lands on the key itself
(artist_id → track_artist → track_id; album_id → track.album_id → track_id).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, select, tuple_

from streams.errors import ConfigError
from streams.migration.template import CollectionTemplate, Field, Join

Row = Mapping[str, Any]
VALUES_PER_QUERY = 1000


@dataclass(frozen=True, slots=True)
class Link:
    """This node's `columns` equal the parent's `parent_columns`."""

    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Node:
    alias: str
    table: str
    link: Link | None  # None: the collection's root


class EmbeddingPaths:
    """The join paths of one collection, to find the root keys of the documents changed rows are part of."""

    def __init__(self, collection: CollectionTemplate, tables: Mapping[str, Table]) -> None:
        self.collection = collection
        self.key = collection.key
        self._tables = tables
        self.nodes: dict[str, Node] = {}
        root = collection.root
        self.root = Node(root.alias, root.table, None)
        self.nodes[root.alias] = self.root
        self._joins(root.joins, root.alias)
        self._fields(root.fields, root.alias)

    @property
    def tables(self) -> set[str]:
        """Every table whose rows end up in this collection's documents."""
        return {node.table for node in self.nodes.values()}

    def link_columns(self) -> dict[str, set[str]]:
        """Per table, the columns its rows are tied to a document by (the key, for the root table)."""
        needed: dict[str, set[str]] = {}
        for node in self.nodes.values():
            columns = (self.key,) if node.link is None else node.link.columns
            needed.setdefault(node.table, set()).update(columns)
        return needed

    # --- compiling ---------------------------------------------------------------------------------

    def _add(self, alias: str, table: str, pairs: Sequence[tuple[str, str]], owner: str) -> None:
        refs = [ref.rpartition(".") for _, ref in pairs]
        parents = {alias_ or owner for alias_, _, _ in refs}
        if len(parents) != 1:
            raise ConfigError(f"collection '{self.collection.name}': '{alias}' joins columns of several tables "
                              f"({', '.join(sorted(parents))}); assemble follows a join to one table")
        link = Link(tuple(own for own, _ in pairs), parents.pop(), tuple(column for _, _, column in refs))
        self.nodes[alias] = Node(alias, table, link)

    def _joins(self, joins: Iterable[Join], owner: str) -> None:
        for join in joins:
            self._add(join.alias, join.table, join.on, owner)

    def _fields(self, fields: Iterable[Field], owner: str) -> None:
        for item in fields:
            section = item.section
            if item.kind in ("concat", "coalesce"):
                self._fields(item.parts, owner)
            elif section is not None and item.kind == "object" and not section.table:
                self._fields(section.fields, owner)
            elif section is not None:
                self._add(section.alias, section.table, section.join, owner)
                self._joins(section.joins, section.alias)
                self._fields(section.fields + ((section.value,) if section.value is not None else ()), section.alias)

    # --- walking -----------------------------------------------------------------------------------

    def roots(self, conn: Connection, changed: Sequence[tuple[str, Sequence[Row], int]]) -> dict[Any, int]:
        """Root key → highest version, for changed rows given as (table, row images, version).

        Rows are linked as the database stands now (at or after every change's commit), from both images of a
        row: a row that moved from one parent to another rebuilds both.
        """
        found: dict[Any, int] = {}
        starts: dict[str, dict[tuple[Any, ...], int]] = {}
        for table, images, version in changed:
            for node in self.nodes.values():
                if node.table != table:
                    continue
                columns = (self.key,) if node.link is None else node.link.columns
                for image in images:
                    if all(column in image for column in columns):
                        values = tuple(image[column] for column in columns)
                        if None not in values:
                            _keep_max(starts.setdefault(node.alias, {}), values, version)
        for alias, values in starts.items():
            for key, version in self._walk(conn, self.nodes[alias], values).items():
                _keep_max(found, key, version)
        return found

    def _walk(self, conn: Connection, node: Node, values: dict[tuple[Any, ...], int]) -> dict[Any, int]:
        while node.link is not None:
            link = node.link
            parent = self.nodes[link.parent]
            if parent.link is None and link.parent_columns == (self.key,):
                return {value[0]: version for value, version in values.items()}
            wanted = (self.key,) if parent.link is None else parent.link.columns
            values = self._parents(conn, parent.table, link.parent_columns, wanted, values)
            node = parent
        return {value[0]: version for value, version in values.items()}

    def _parents(self, conn: Connection, table_name: str, match: tuple[str, ...], wanted: tuple[str, ...],
                 values: dict[tuple[Any, ...], int]) -> dict[tuple[Any, ...], int]:
        """Rows of `table_name` whose `match` columns hold one of `values`: their `wanted` columns, each with the
        highest version of the values that led to it."""
        table = self._tables[table_name]
        matched = [table.c[column] for column in match]
        selected = select(*matched, *(table.c[column] for column in wanted)).distinct()
        condition = matched[0] if len(matched) == 1 else tuple_(*matched)
        out: dict[tuple[Any, ...], int] = {}
        items = list(values)
        width = len(match)
        for start in range(0, len(items), VALUES_PER_QUERY):
            chunk = items[start:start + VALUES_PER_QUERY]
            keys = [value[0] for value in chunk] if width == 1 else chunk
            for row in conn.execute(selected.where(condition.in_(keys))):
                version = values.get(tuple(row[:width]))
                if version is not None:
                    _keep_max(out, tuple(row[width:]), version)
        return out


def _keep_max(into: dict[Any, int], key: Any, version: int) -> None:
    if into.get(key, -1) < version:
        into[key] = version
