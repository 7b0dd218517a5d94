"""SCDF's out-of-the-box stream apps and their tuneflow counterparts: which app, which option, which value.

SCDF option names are compared the way Spring's relaxed binding reads them (`server.port`, `serverPort` and
`server_port` are one name), both in full (`mongodb.consumer.collection`) and short (`collection`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from streams.runtime.contract import AppKind


class Unmapped(Exception):
    """An app, option or value without a counterpart; the message says why, and what to do instead."""


Convert = Callable[[str], str]
Parts = dict[str, tuple[str, str]]  # part name -> (SCDF option, value), gathered for `compose`
Composed = tuple[dict[str, str], dict[str, str]]  # (tuneflow options, SCDF option -> why it could not be used)


def same(value: str) -> str:
    return value


@dataclass(frozen=True)
class Option:
    """Where one SCDF option goes: a tuneflow option, a part of one (`@part`, see `compose`), or nowhere because
    tuneflow already behaves that way (`target=""`, e.g. a file sink's mode=APPEND)."""

    target: str
    convert: Convert = same


@dataclass(frozen=True)
class Counterpart:
    """A tuneflow app standing in for an SCDF app of one kind."""

    scdf: str
    kind: AppKind
    app: str
    options: Mapping[str, Option]
    reasons: Mapping[str, str] = field(default_factory=dict)  # known SCDF options without a counterpart: why
    compose: Callable[[Parts], Composed] | None = None


def relaxed(key: str) -> str:
    """An option name as Spring's relaxed binding compares it."""
    return re.sub(r"[-_]", "", key).lower()


def _table(entries: Mapping[tuple[str, ...], Option | str]) -> tuple[dict[str, Option], dict[str, str]]:
    """({relaxed name: Option}, {relaxed name: reason}) from {(SCDF names…): Option or a reason}."""
    options: dict[str, Option] = {}
    reasons: dict[str, str] = {}
    for names, target in entries.items():
        for name in names:
            if isinstance(target, Option):
                options[relaxed(name)] = target
            else:
                reasons[relaxed(name)] = target
    return options, reasons


# -- value conversions ---------------------------------------------------------------------------------------------


def single_topic(value: str) -> str:
    if "," in value:
        raise Unmapped("several topics: tuneflow's kafka source reads one; make one stream per topic")
    return value


def log_level(value: str) -> str:
    levels = {"TRACE": "DEBUG", "DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARNING", "WARNING": "WARNING"}
    if value.upper() not in levels:
        raise Unmapped(f"level {value}: tuneflow's log sink writes at DEBUG, INFO or WARNING")
    return levels[value.upper()]


def append_mode(value: str) -> str:
    if value.upper() != "APPEND":
        raise Unmapped(f"mode {value}: tuneflow's file sink always appends")
    return ""


JDBC_SCHEMES = {"postgresql": "postgresql", "mysql": "mariadb", "mariadb": "mariadb"}


def jdbc_url(value: str) -> str:
    """`jdbc:postgresql://h:5432/db` → `postgresql://h:5432/db`; MySQL and MariaDB → `mariadb://`."""
    scheme, separator, rest = value.removeprefix("jdbc:").partition("://")
    if not separator or scheme not in JDBC_SCHEMES:
        raise Unmapped(f"{value}: tuneflow reads PostgreSQL, MariaDB/MySQL and SQLite databases")
    return f"{JDBC_SCHEMES[scheme]}://{rest}"


def with_credentials(url: str, user: str | None, password: str | None) -> str:
    """`url` with `user:password@` put in front of its host (unless it has credentials already)."""
    if not user:
        return url
    scheme, _, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        return url
    secret = f":{quote(password, safe='')}" if password else ""
    return f"{scheme}://{quote(user, safe='')}{secret}@{rest}"


# -- composed options ----------------------------------------------------------------------------------------------


def _value(parts: Parts, name: str) -> str | None:
    return parts[name][1] if name in parts else None


def _orphans(parts: Parts, names: tuple[str, ...], reason: str) -> dict[str, str]:
    return {parts[name][0]: reason for name in names if name in parts}


def compose_datasource(parts: Parts) -> Composed:
    """spring.datasource.url, .username and .password → one `url` with its credentials."""
    url = _value(parts, "url")
    if url is None:
        return {}, _orphans(parts, ("user", "password"), "no spring.datasource.url to put it in")
    return {"url": with_credentials(url, _value(parts, "user"), _value(parts, "password"))}, {}


def compose_mongo(parts: Parts) -> Composed:
    """spring.data.mongodb.uri, or .host/.port/.username/.password → `uri`; the database of the URI → `database`."""
    uri = _value(parts, "uri")
    if uri is None and not parts:
        return {}, {}
    if uri is None:
        host = f"{_value(parts, 'host') or 'localhost'}:{_value(parts, 'port') or '27017'}"
        uri = with_credentials(f"mongodb://{host}", _value(parts, "user"), _value(parts, "password"))
    options = {"uri": uri}
    database = urlsplit(uri).path.strip("/")
    if database:
        options["database"] = database
    return options, {}


def compose_file_name(parts: Parts) -> Composed:
    """file.consumer.name and .suffix → one file `name`."""
    name, suffix = _value(parts, "name"), _value(parts, "suffix")
    if name is None and suffix is None:
        return {}, {}
    return {"name": f"{name or 'file-sink'}.{suffix}" if suffix else name or "file-sink"}, {}


def compose_debezium(scheme: str) -> Callable[[Parts], Composed]:
    def compose(parts: Parts) -> Composed:
        host = _value(parts, "host")
        if host is None:
            return {}, _orphans(parts, ("port", "user", "password", "dbname"),
                                "no debezium.properties.database.hostname to connect to")
        port = _value(parts, "port")
        url = f"{scheme}://{host}{':' + port if port else ''}/{_value(parts, 'dbname') or ''}"
        return {"url": with_credentials(url, _value(parts, "user"), _value(parts, "password"))}, {}
    return compose


# -- the table -----------------------------------------------------------------------------------------------------

SPEL = "a SpEL expression: tuneflow apps take no expressions"
DATASOURCE: dict[tuple[str, ...], Option | str] = {
    ("spring.datasource.url", "url", "jdbc.url"): Option("@url", jdbc_url),
    ("spring.datasource.username", "username"): Option("@user"),
    ("spring.datasource.password", "password"): Option("@password"),
    ("spring.datasource.driver-class-name", "driver-class-name"): Option(""),  # the URL's scheme picks it
}
DEBEZIUM: dict[tuple[str, ...], Option | str] = {
    ("debezium.properties.connector.class", "connector.class", "cdc.connector", "connector"): Option(""),
    ("debezium.properties.database.hostname", "database.hostname"): Option("@host"),
    ("debezium.properties.database.port", "database.port"): Option("@port"),
    ("debezium.properties.database.user", "database.user"): Option("@user"),
    ("debezium.properties.database.password", "database.password"): Option("@password"),
    ("debezium.properties.database.dbname", "database.dbname"): Option("@dbname"),
    ("debezium.properties.table.include.list", "table.include.list"): Option("tables"),
    ("debezium.properties.slot.name", "slot.name"): Option("slot-name"),
    ("debezium.properties.topic.prefix", "debezium.properties.database.server.name", "topic.prefix"):
        "tuneflow names the topic after the stream and label",
    ("debezium.properties.offset.storage", "offset.storage"): "tuneflow keeps CDC positions itself",
}


def _counterpart(scdf: str, kind: AppKind, app: str, entries: Mapping[tuple[str, ...], Option | str],
                 compose: Callable[[Parts], Composed] | None = None) -> Counterpart:
    options, reasons = _table(entries)
    return Counterpart(scdf, kind, app, options, reasons, compose)


COUNTERPARTS: dict[tuple[AppKind, str], Counterpart] = {
    ("source", "http"): _counterpart("http", "source", "http", {
        ("server.port", "port"): Option("port"),
        ("http.path-pattern", "path-pattern"): "tuneflow's http source serves fixed routes (POST /tracks, …)",
        ("http.mapped-request-headers", "mapped-request-headers"): "tuneflow's http source keeps no headers",
    }),
    ("source", "kafka"): _counterpart("kafka", "source", "kafka", {
        ("kafka.supplier.topics", "topics", "topic"): Option("topic", single_topic),
        ("spring.kafka.consumer.group-id", "group-id"): Option("group"),
        ("spring.kafka.bootstrap-servers", "bootstrap-servers"): "set TUNEFLOW_KAFKA_BOOTSTRAP instead",
        ("kafka.supplier.topic-pattern", "topic-pattern"): "tuneflow's kafka source reads one named topic",
    }),
    ("source", "jdbc"): _counterpart("jdbc", "source", "jdbc", {
        **DATASOURCE,
        ("jdbc.supplier.query", "query", "jdbc.query"):
            "tuneflow's jdbc source reads the legacy catalog's tracks, not a query",
        ("jdbc.supplier.update", "update", "jdbc.update"): "tuneflow's jdbc source never writes to its source",
    }, compose_datasource),
    ("source", "cdc-postgres"): _counterpart("debezium", "source", "cdc-postgres", DEBEZIUM,
                                             compose_debezium("postgresql")),
    ("source", "cdc-mysql"): _counterpart("debezium", "source", "cdc-mysql", {
        **DEBEZIUM,
        ("debezium.properties.database.server.id", "database.server.id"): Option("server-id"),
    }, compose_debezium("mariadb")),
    ("processor", "filter"): _counterpart("filter", "processor", "filter", {
        ("filter.function.expression", "filter.expression", "expression"): SPEL,
    }),
    ("sink", "log"): _counterpart("log", "sink", "log", {
        ("log.level", "level"): Option("level", log_level),
        ("log.name", "name"): "tuneflow logs under the app's own logger",
        ("log.expression", "expression"): SPEL,
    }),
    ("sink", "file"): _counterpart("file", "sink", "file", {
        ("file.consumer.directory", "file.directory", "directory"): Option("dir"),
        ("file.consumer.name", "file.name", "name"): Option("@name"),
        ("file.consumer.suffix", "file.suffix", "suffix"): Option("@suffix"),
        ("file.consumer.mode", "file.mode", "mode"): Option("", append_mode),
        ("file.consumer.binary", "binary"): "tuneflow's file sink writes NDJSON lines",
        ("file.consumer.directory-expression", "directory-expression"): SPEL,
    }, compose_file_name),
    ("sink", "mongodb"): _counterpart("mongodb", "sink", "mongo", {
        ("mongodb.consumer.collection", "mongodb.collection", "collection"): Option("collection"),
        ("spring.data.mongodb.uri", "uri"): Option("@uri"),
        ("spring.data.mongodb.database", "database"): Option("database"),
        ("spring.data.mongodb.host", "host"): Option("@host"),
        ("spring.data.mongodb.port", "port"): Option("@port"),
        ("spring.data.mongodb.username", "username"): Option("@user"),
        ("spring.data.mongodb.password", "password"): Option("@password"),
        ("mongodb.consumer.collection-expression", "collection-expression"): SPEL,
    }, compose_mongo),
    ("sink", "jdbc"): _counterpart("jdbc", "sink", "jdbc", {
        **DATASOURCE,
        ("jdbc.consumer.table-name", "jdbc.table-name", "table-name"):
            "tuneflow's jdbc sink writes a template's documents back into their tables (--template, --collection), "
            "not records into one table",
        ("jdbc.consumer.columns", "jdbc.columns", "columns"): "tuneflow's jdbc sink writes catalog rows, not columns",
        ("jdbc.consumer.initialize", "initialize"): "tuneflow's jdbc sink writes to the catalog's own tables",
    }, compose_datasource),
}

DEBEZIUM_APPS = ("debezium", "cdc-debezium")
DEBEZIUM_CONNECTORS = {"postgres": "cdc-postgres", "mysql": "cdc-mysql", "mariadb": "cdc-mysql"}


def counterpart(kind: AppKind, scdf_app: str, options: Mapping[str, str]) -> Counterpart:
    """The tuneflow app for SCDF's `scdf_app` in that place; Unmapped says why there is none."""
    if scdf_app in DEBEZIUM_APPS and kind == "source":
        return COUNTERPARTS[("source", debezium_app(options))]
    for (known_kind, _), found in COUNTERPARTS.items():
        if known_kind == kind and found.scdf == scdf_app and found.scdf not in DEBEZIUM_APPS:
            return found
    raise Unmapped(f"no tuneflow counterpart for SCDF's {kind} '{scdf_app}'")


def debezium_app(options: Mapping[str, str]) -> str:
    """cdc-postgres or cdc-mysql, by the Debezium connector the options name."""
    connector_keys = {relaxed(name) for name in ("debezium.properties.connector.class", "connector.class",
                                                 "cdc.connector", "connector")}
    connector = next((value for key, value in options.items() if relaxed(key) in connector_keys), None)
    if connector is None:
        raise Unmapped("no connector: set debezium.properties.connector.class to Debezium's PostgreSQL or MySQL "
                       "connector")
    name = connector.rsplit(".", 1)[-1].lower().removesuffix("connector")
    if name not in DEBEZIUM_CONNECTORS:
        raise Unmapped(f"Debezium connector {connector}: tuneflow captures changes of PostgreSQL and MariaDB/MySQL")
    return DEBEZIUM_CONNECTORS[name]


def general_reason(key: str, app: str) -> str:
    """Why an SCDF option that no counterpart names is not carried over."""
    if key.startswith("spring.cloud.stream."):
        return "a binding property: tuneflow wires the topics itself"
    if key.startswith(("management.", "logging.", "server.", "spring.")):
        return "a Spring Boot setting: tuneflow apps have no such setting"
    return f"no such option in tuneflow's '{app}' app"
