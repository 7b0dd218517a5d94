"""Migration templates: YAML that maps relational tables to nested documents, parsed, validated and checked.

A template names, per target collection, a root table and its key, and the document's fields: columns (renamed,
converted), joined objects, ordered arrays and counts of child tables, and a few computed values. It is validated
against the JSON Schema shipped beside this module, then against the live schema of the source database, before
anything runs (`check_against`): an unknown table or column is a ConfigError naming it, with "did you mean".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema
import yaml
from sqlalchemy import Connection, inspect

from streams.errors import ConfigError
from streams.suggest import did_you_mean

SCHEMA_PATH = Path(__file__).with_name("template.schema.json")
# The legacy catalog's template lives with the deployment files of a source checkout.
CATALOG_TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "templates" / "catalog.yaml"


def catalog_template_path() -> Path:
    """deploy/templates/catalog.yaml of this checkout; ConfigError when tuneflow runs without its sources."""
    if not CATALOG_TEMPLATE.is_file():
        raise ConfigError(f"the catalog template {CATALOG_TEMPLATE} is missing: pass one with --template")
    return CATALOG_TEMPLATE


@cache
def template_schema() -> dict[str, Any]:
    """The JSON Schema of the template format (draft 2020-12)."""
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


@dataclass(frozen=True)
class Join:
    """A many-to-one table joined into a section's rows as `alias`: alias.<child col> = <section alias>.<col>."""

    alias: str
    table: str
    on: tuple[tuple[str, str], ...]  # (column of the joined table, column of the owning section)


@dataclass(frozen=True)
class Field:
    """One document field. `kind` says which of the other attributes matter."""

    name: str
    kind: str  # column | const | concat | coalesce | object | array | count
    column: str | None = None
    convert: str | None = None
    enum: tuple[Any, ...] | None = None
    mapping: dict[Any, Any] | None = None
    default: Any = None
    const: Any = None
    separator: str = ""
    parts: tuple[Field, ...] = ()
    section: Section | None = None


@dataclass(frozen=True)
class OrderBy:
    column: str
    rank: tuple[Any, ...] | None = None
    descending: bool = False


@dataclass(frozen=True)
class Section:
    """A table read into (part of) a document: the root, a joined object, an array or a count."""

    table: str
    alias: str
    join: tuple[tuple[str, str], ...] = ()  # (this table's column, parent's column)
    joins: tuple[Join, ...] = ()
    fields: tuple[Field, ...] = ()
    value: Field | None = None  # arrays of scalars
    order: tuple[OrderBy, ...] = ()
    distinct: bool = False


@dataclass(frozen=True)
class CollectionTemplate:
    name: str
    root: Section
    key: str
    version: tuple[str, ...]


@dataclass(frozen=True)
class Template:
    collections: dict[str, CollectionTemplate]
    timezone: ZoneInfo
    text: str = field(repr=False, default="")

    def select(self, names: list[str] | None) -> list[CollectionTemplate]:
        """The collections named (all, in template order, when none are), ConfigError for an unknown one."""
        if not names:
            return list(self.collections.values())
        for name in names:
            if name not in self.collections:
                raise ConfigError(f"the template has no collection '{name}'.{did_you_mean(name, self.collections)}"
                                  f" It maps: {', '.join(self.collections)}")
        return [self.collections[name] for name in names]


def load_template(path: str | Path) -> Template:
    """The template in the YAML file at `path`; ConfigError says what is wrong and where."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read template {str(path)!r}: {exc.strerror or exc}") from None
    return parse_template(text, str(path))


def parse_template(text: str, where: str = "<template>") -> Template:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {exc}") from None
    errors = sorted(jsonschema.Draft202012Validator(template_schema()).iter_errors(data),
                    key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        first = errors[0]
        location = "/".join(map(str, first.absolute_path)) or "(top level)"
        raise ConfigError(f"{where}: {location}: {_schema_message(first)}"
                          + (f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""))
    zone_name = data.get("timezone", "UTC")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: timezone {zone_name!r} is not an IANA time zone (e.g. UTC, Asia/Seoul)") from None
    collections = {name: _collection(name, spec, where) for name, spec in data["collections"].items()}
    return Template(collections=collections, timezone=zone, text=text)


FIELD_KINDS = ("column", "const", "concat", "coalesce", "object", "array", "count")


def _schema_message(error: jsonschema.ValidationError) -> str:
    """The message of the branch a user meant: a field `{column: …}` is judged as a column, not as a string."""
    if error.validator != "oneOf" or not error.context:
        return str(error.message)
    if isinstance(error.instance, dict):
        branches: dict[Any, list[jsonschema.ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        choices: list[Any] = list(error.validator_value) if isinstance(error.validator_value, list) else []
        for index, errors in branches.items():
            branch = choices[index] if isinstance(index, int) and index < len(choices) else {}
            required = branch.get("required", []) if isinstance(branch, dict) else []
            if any(key in error.instance for key in required):
                best = jsonschema.exceptions.best_match(errors)
                assert best is not None
                where = "/".join(map(str, list(best.absolute_path)[len(error.absolute_path):]))
                return f"{where + ': ' if where else ''}{_schema_message(best)}"
        unknown = [key for key in error.instance if key not in FIELD_KINDS]
        if unknown and all(key not in error.instance for key in FIELD_KINDS):
            return (f"unknown key '{unknown[0]}'.{did_you_mean(str(unknown[0]), FIELD_KINDS)} A field is a column "
                    f"name or an object with one of: {', '.join(FIELD_KINDS)}")
    best = jsonschema.exceptions.best_match(error.context)
    return str(best.message) if best is not None else str(error.message)


def _collection(name: str, spec: dict[str, Any], where: str) -> CollectionTemplate:
    alias = spec["table"]
    root = Section(table=spec["table"], alias=alias, joins=_joins(spec.get("joins", {})),
                   fields=_fields(spec["fields"], alias, f"{where}: collections/{name}"))
    return CollectionTemplate(name=name, root=root, key=spec["key"], version=tuple(spec.get("version", [])))


def _joins(spec: dict[str, Any]) -> tuple[Join, ...]:
    return tuple(Join(alias=alias, table=item["table"], on=tuple(item["join"].items())) for alias, item in spec.items())


def _fields(spec: dict[str, Any], alias: str, where: str) -> tuple[Field, ...]:
    if "_id" in spec:
        raise ConfigError(f"{where}: '_id' is the collection's key; name the key column with 'key'")
    return tuple(_field(name, item, f"{alias}.{name}", where) for name, item in spec.items())


def _field(name: str, spec: Any, path: str, where: str) -> Field:
    if isinstance(spec, str):
        return Field(name=name, kind="column", column=spec)
    if "column" in spec:
        return Field(name=name, kind="column", column=spec["column"], convert=spec.get("convert"),
                     enum=tuple(spec["enum"]) if "enum" in spec else None, mapping=spec.get("map"),
                     default=spec.get("default"))
    if "const" in spec:
        return Field(name=name, kind="const", const=spec["const"])
    if "concat" in spec:
        return Field(name=name, kind="concat", separator=spec.get("separator", ""),
                     parts=tuple(_field(name, part, path, where) for part in spec["concat"]))
    if "coalesce" in spec:
        parts = tuple(_field(name, part, path, where) for part in spec["coalesce"])
        return Field(name=name, kind="coalesce", parts=parts)
    if "object" in spec:
        body = spec["object"]
        if "table" in body and "join" not in body:
            raise ConfigError(f"{where}: {path}: an object with a table needs 'join' (its column: the parent's)")
        section = Section(table=body.get("table", ""), alias=path, join=tuple(body.get("join", {}).items()),
                          fields=_fields(body["fields"], path, where))
        return Field(name=name, kind="object", section=section)
    kind = "array" if "array" in spec else "count"
    body = spec[kind]
    joins = _joins(body.get("joins", {}))
    fields = _fields(body["fields"], path, where) if "fields" in body else ()
    value = _field(name, body["value"], path, where) if "value" in body else None
    order = tuple(OrderBy(column=item) if isinstance(item, str) else
                  OrderBy(column=item["column"], rank=tuple(item["rank"]) if "rank" in item else None,
                          descending=item.get("descending", False)) for item in body.get("order", []))
    section = Section(table=body["table"], alias=path, join=tuple(body["join"].items()), joins=joins,
                      fields=fields, value=value, order=order, distinct=body.get("distinct", False))
    return Field(name=name, kind=kind, section=section)


# --- the live schema ---------------------------------------------------------------------------------


def check_against(template: Template, conn: Connection, collections: list[str] | None = None) -> None:
    """Every table and column the template reads exists at the source; ConfigError naming the first that does not.

    Arrays and counts join to their collection's key (the sort-merge reads every child cursor in key order).
    """
    inspector = inspect(conn)
    tables = set(inspector.get_table_names())
    columns: dict[str, set[str]] = {}

    def table_columns(table: str, where: str) -> set[str]:
        if table not in tables:
            raise ConfigError(f"{where}: unknown table '{table}' in the source.{did_you_mean(table, tables)}")
        if table not in columns:
            columns[table] = {column["name"] for column in inspector.get_columns(table)}
        return columns[table]

    def need(table: str, column: str, where: str) -> None:
        known = table_columns(table, where)
        if column not in known:
            raise ConfigError(f"{where}: unknown column '{column}' in table '{table}'.{did_you_mean(column, known)}")

    for collection in template.select(collections):
        where = f"collection '{collection.name}'"
        root = collection.root
        need(root.table, collection.key, f"{where}, key")
        scope = _scope(root, {root.alias: root.table}, need, where)
        for column in collection.version:
            _need_ref(column, root.alias, scope, need, f"{where}, version")
        _check_fields(root.fields, root.alias, scope, need, where, collection.key, top=True)


def _scope(section: Section, scope: dict[str, str], need: Any, where: str) -> dict[str, str]:
    scope = dict(scope)
    for join in section.joins:
        for own, parent in join.on:
            need(join.table, own, f"{where}, join '{join.alias}'")
            _need_ref(parent, section.alias, scope, need, f"{where}, join '{join.alias}'")
        scope[join.alias] = join.table
    return scope


def _need_ref(ref: str, alias: str, scope: dict[str, str], need: Any, where: str) -> None:
    owner, _, column = ref.rpartition(".")
    owner = owner or alias
    if owner not in scope:
        raise ConfigError(f"{where}: '{ref}' names no table joined here.{did_you_mean(owner, scope)}")
    need(scope[owner], column, where)


def _check_fields(fields: tuple[Field, ...], alias: str, scope: dict[str, str], need: Any, where: str,
                  key: str, top: bool) -> None:
    for item in fields:
        here = f"{where}, field '{item.name}'"
        if item.kind == "column":
            assert item.column is not None
            _need_ref(item.column, alias, scope, need, here)
        elif item.kind in ("concat", "coalesce"):
            _check_fields(item.parts, alias, scope, need, where, key, top)
        elif item.kind == "object":
            section = item.section
            assert section is not None
            if not section.table:
                _check_fields(section.fields, alias, scope, need, here, key, top)
                continue
            inner = dict(scope)
            inner[section.alias] = section.table
            for own, parent in section.join:
                need(section.table, own, here)
                _need_ref(parent, alias, scope, need, here)
            _check_fields(section.fields, section.alias, inner, need, here, key, top=False)
        elif item.kind in ("array", "count"):
            section = item.section
            assert section is not None
            if not top:
                raise ConfigError(f"{here}: arrays and counts belong at the top level of a document")
            if len(section.join) != 1 or section.join[0][1] != key:
                raise ConfigError(f"{here}: an {item.kind} joins by one column to the collection's key "
                                  f"'{key}' (e.g. join: {{{key}: {key}}})")
            need(section.table, section.join[0][0], here)
            inner = _scope(section, {section.alias: section.table}, need, here)
            for order in section.order:
                _need_ref(order.column, section.alias, inner, need, f"{here}, order")
            parts = section.fields + ((section.value,) if section.value is not None else ())
            _check_fields(parts, section.alias, inner, need, here, key, top=False)
