"""A document as the rows of a template's tables: every value checked against its column before any SQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table

from streams.errors import ConfigError
from streams.migration.inverse import ArrayPlan, ColumnWrite, Link, RowPlan, WritePlan, field_value
from streams.stores.column_values import fit_column

Document = dict[str, Any]
Row = dict[str, Any]
Reasons = list[dict[str, str]]


class Refused(Exception):
    """A document's value does not fit its column: the document is rejected with these reasons."""

    def __init__(self, reasons: Reasons) -> None:
        super().__init__("; ".join(f"{r['field']}: {r['message']}" for r in reasons))
        self.reasons = reasons


@dataclass
class DocumentRows:
    root: Row
    references: list[tuple[RowPlan, Row]]
    lookups: list[tuple[RowPlan, Row, list[tuple[Row, str]]]]  # rows found by value; where their key goes
    children: dict[str, list[Row]]


def rows_of(plan: WritePlan, tables: dict[str, Table], key: Any, document: Document, zone: str
            ) -> DocumentRows:
    """The rows of one document, every value checked against its column; Refused lists every misfit."""
    problems: Reasons = []

    def values(table: Table, writes: Sequence[ColumnWrite], source: Any, prefix: str = "") -> Row:
        row: Row = {}
        for write in writes:
            label = f"{prefix}{write.label}" if write.path else prefix.rstrip(".")
            try:
                row[write.column] = fit_column(table.c[write.column], field_value(source, write), zone)
            except ValueError as exc:
                problems.append({"field": label, "message": f"{exc} ({table.name}.{write.column})"})
        return row

    root = values(tables[plan.table], plan.columns, document)
    references: list[tuple[RowPlan, Row]] = []
    for link in plan.objects:
        embedded = field_value(document, ColumnWrite("", link.row.columns[0].path[:1]))
        if embedded is None:
            for own, _ in link.pairs:
                root[own] = None
            continue
        row = values(tables[link.row.table], link.row.columns, document)
        references.append((link.row, row))
        for own, referenced in link.pairs:
            root[own] = row.get(referenced)
    lookups: list[tuple[RowPlan, Row, list[tuple[Row, str]]]] = []
    children: dict[str, list[Row]] = {}
    for array in plan.arrays:
        children[array.field] = _child_rows(array, tables, key, document, values, references, lookups)
    if problems:
        raise Refused(problems)
    references.sort(key=lambda item: (item[0].table, tuple(str(item[1].get(c)) for c in item[0].key)))
    return DocumentRows(root, _unique_references(references), lookups, children)


def _child_rows(array: ArrayPlan, tables: dict[str, Table], key: Any, document: Document, values: Any,
                references: list[tuple[RowPlan, Row]],
                lookups: list[tuple[RowPlan, Row, list[tuple[Row, str]]]]) -> list[Row]:
    elements = document.get(array.field) or []
    if not isinstance(elements, list):
        raise Refused([{"field": array.field, "message": "is not an array"}])
    rows: list[Row] = []
    child = tables[array.table]
    for position, element in enumerate(elements, start=1):
        prefix = f"{array.field}[{position - 1}]."
        row = values(child, array.columns, element, prefix)
        row[array.parent_column] = key
        if array.position_column is not None:
            row[array.position_column] = position
        for link in array.links:
            referenced = values(tables[link.row.table], link.row.columns, element, prefix)
            if link.row.lookup:
                lookups.append((link.row, referenced, [(row, own) for own, _ in link.pairs]))
            else:
                for own, column in link.pairs:
                    referenced[column] = row.get(own)
                references.append((link.row, referenced))
        rows.append(row)
    return rows


def _unique_references(references: list[tuple[RowPlan, Row]]) -> list[tuple[RowPlan, Row]]:
    seen: dict[tuple[str, tuple[Any, ...]], tuple[RowPlan, Row]] = {}
    for row_plan, row in references:
        seen[(row_plan.table, tuple(row.get(c) for c in row_plan.key))] = (row_plan, row)
    return list(seen.values())


def unique_rows(rows: list[Row]) -> list[Row]:
    return list({tuple(sorted(row.items())): row for row in rows}.values())


def check_columns(plan: WritePlan, tables: dict[str, Table]) -> None:
    """Every column the plan writes exists (the template check covered reads; writes name the same columns)."""
    def need(table: str, column: str) -> None:
        if column not in tables[table].c:
            raise ConfigError(f"collection '{plan.collection}': table '{table}' has no column '{column}' to write")

    for write in plan.columns:
        need(plan.table, write.column)
    links: list[Link] = list(plan.objects)
    for array in plan.arrays:
        links += array.links
        for write in array.columns:
            need(array.table, write.column)
        if array.position_column is not None:
            need(array.table, array.position_column)
    for link in links:
        for write in link.row.columns:
            need(link.row.table, write.column)


def read_tables(collections: Sequence[Any]) -> set[str]:
    """Every table a collection's reader joins (the reader is compiled against them)."""
    names: set[str] = set()

    def walk(section: Any) -> None:
        if section.table:
            names.add(section.table)
        names.update(join.table for join in section.joins)
        for item in section.fields:
            if item.section is not None:
                walk(item.section)

    for collection in collections:
        walk(collection.root)
    return names
