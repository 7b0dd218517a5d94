"""`tuneflow stream export --format scdf`: tuneflow streams as SCDF reads them, apps and options in SCDF's names.

What has no SCDF counterpart (e.g. `normalize`, `log --max-chars`) is written as it is and named in the notes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from streams.dsl import AppNode, StreamDefinition, to_text
from streams.scdf.apps import JDBC_SCHEMES

Export = Callable[[str], dict[str, str]]  # a tuneflow option's value -> SCDF options


@dataclass(frozen=True)
class ScdfApp:
    """How one tuneflow app is written for SCDF."""

    name: str
    options: Mapping[str, Export]
    fixed: Mapping[str, str] = field(default_factory=dict)  # options SCDF needs that tuneflow implies


def _to(name: str, convert: Callable[[str], str] = lambda value: value) -> Export:
    return lambda value: {name: convert(value)}


def _datasource(value: str) -> dict[str, str]:
    """`postgresql://user:secret@h:5432/db` → spring.datasource.url=jdbc:postgresql://h:5432/db, .username,
    .password."""
    parts = urlsplit(value)
    scheme = {"mariadb": "mariadb", "mysql": "mysql"}.get(parts.scheme, parts.scheme)
    if scheme not in JDBC_SCHEMES:
        return {"spring.datasource.url": value}
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    options = {"spring.datasource.url": f"jdbc:{scheme}://{host}{port}{parts.path}"}
    if parts.username:
        options["spring.datasource.username"] = unquote(parts.username)
    if parts.password:
        options["spring.datasource.password"] = unquote(parts.password)
    return options


def _debezium_database(value: str) -> dict[str, str]:
    parts = urlsplit(value)
    options = {"debezium.properties.database.hostname": parts.hostname or ""}
    if parts.port:
        options["debezium.properties.database.port"] = str(parts.port)
    if parts.username:
        options["debezium.properties.database.user"] = unquote(parts.username)
    if parts.password:
        options["debezium.properties.database.password"] = unquote(parts.password)
    if parts.path.strip("/"):
        options["debezium.properties.database.dbname"] = parts.path.strip("/")
    return options


def _file_name(value: str) -> dict[str, str]:
    name, dot, suffix = value.rpartition(".")
    return {"file.consumer.name": name, "file.consumer.suffix": suffix} if dot and name else \
        {"file.consumer.name": value}


def _scdf_level(value: str) -> str:
    return "WARN" if value == "WARNING" else value


DEBEZIUM_OPTIONS: dict[str, Export] = {"url": _debezium_database,
                                       "tables": _to("debezium.properties.table.include.list"),
                                       "slot-name": _to("debezium.properties.slot.name")}
SCDF_APPS: dict[tuple[str, str], ScdfApp] = {
    ("source", "http"): ScdfApp("http", {"port": _to("server.port")}),
    ("source", "kafka"): ScdfApp("kafka", {"topic": _to("kafka.supplier.topics"),
                                           "group": _to("spring.kafka.consumer.group-id")}),
    ("source", "jdbc"): ScdfApp("jdbc", {"url": _datasource}),
    ("source", "cdc-postgres"): ScdfApp("debezium", DEBEZIUM_OPTIONS, {
        "debezium.properties.connector.class": "io.debezium.connector.postgresql.PostgresConnector"}),
    ("source", "cdc-mysql"): ScdfApp("debezium", {**DEBEZIUM_OPTIONS,
                                                  "server-id": _to("debezium.properties.database.server.id")}, {
        "debezium.properties.connector.class": "io.debezium.connector.mysql.MySqlConnector"}),
    ("sink", "log"): ScdfApp("log", {"level": _to("log.level", _scdf_level)}),
    ("sink", "file"): ScdfApp("file", {"dir": _to("file.consumer.directory"), "name": _file_name}),
    ("sink", "mongo"): ScdfApp("mongodb", {"uri": _to("spring.data.mongodb.uri"),
                                           "database": _to("spring.data.mongodb.database"),
                                           "collection": _to("mongodb.consumer.collection")}),
    ("sink", "jdbc"): ScdfApp("jdbc", {"url": _datasource}),
}


def scdf_definition(definition: StreamDefinition) -> tuple[str, list[str]]:
    """The definition in SCDF's app and option names (labels kept), and notes on what has no counterpart."""
    notes: list[str] = []
    apps = [_scdf_app(node, notes) for node in definition.apps]
    return to_text(StreamDefinition(definition.name, "", definition.source_destination, apps,
                                    definition.sink_destination)), notes


def scdf_properties(properties: Mapping[str, str], definition: StreamDefinition) -> dict[str, str]:
    """Deployment properties with `app.<label>.<option>` in SCDF's option names."""
    kinds = {node.label: node for node in definition.apps}
    exported: dict[str, str] = {}
    for key, value in properties.items():
        prefix, _, rest = key.partition(".")
        label, _, option = rest.partition(".")
        node = kinds.get(label)
        scdf = SCDF_APPS.get((node.kind or "", node.app)) if node is not None else None
        if prefix == "app" and scdf is not None and option in scdf.options:
            exported.update({f"app.{label}.{name}": item for name, item in scdf.options[option](value).items()})
        else:
            exported[key] = value
    return exported


def _scdf_app(node: AppNode, notes: list[str]) -> AppNode:
    scdf = SCDF_APPS.get((node.kind or "", node.app))
    if scdf is None:
        notes.append(f"app '{node.label}' ({node.app}): no SCDF counterpart, written as it is")
        return node
    options = dict(scdf.fixed)
    for key, value in node.options.items():
        if key in scdf.options:
            options.update(scdf.options[key](value))
        else:
            notes.append(f"option --{key} of '{node.label}': no counterpart in SCDF's '{scdf.name}', written as it is")
            options[key] = value
    return AppNode(node.label, scdf.name, options, node.kind)
