"""The source side of a migration: a checked template bound to the live schema of the source database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, MetaData
from sqlalchemy.exc import DBAPIError, OperationalError

from streams.catalog.dburl import credentials_refused, error_reason, make_engine, mask_password
from streams.errors import ConfigError, ServiceUnavailableError
from streams.migration.template import CollectionTemplate, Template, check_against, load_template
from streams.migration.template_reader import CollectionReader


@dataclass
class BoundTemplate:
    """A template checked against the source, with one compiled reader per selected collection."""

    template: Template
    readers: dict[str, CollectionReader]

    @property
    def collections(self) -> list[CollectionTemplate]:
        return [reader.collection for reader in self.readers.values()]


def bind_template(template: Template, conn: Connection, collections: list[str] | None = None) -> BoundTemplate:
    """Check `template` against the live schema (ConfigError naming what is unknown), then compile its readers."""
    chosen = template.select(collections)
    check_against(template, conn, [c.name for c in chosen])
    metadata = MetaData()
    metadata.reflect(conn)
    return BoundTemplate(template, {c.name: CollectionReader(c, template, metadata) for c in chosen})


def open_source(url: str) -> Engine:
    return make_engine(url)


@contextlib.contextmanager
def source_errors(url: str) -> Iterator[None]:
    """Database failures as tuneflow errors naming the masked URL: refused credentials are the user's to fix."""
    try:
        yield
    except DBAPIError as exc:
        reason = error_reason(exc, url)
        where = mask_password(url)
        if credentials_refused(exc):
            raise ConfigError(f"the source at {where} refused the credentials: {reason}") from None
        if isinstance(exc, OperationalError):
            raise ServiceUnavailableError(f"cannot reach the source at {where}: {reason}") from None
        raise ConfigError(f"cannot read the source at {where}: {reason}") from None


def load_bound(path: str, url: str, collections: list[str] | None = None) -> tuple[Engine, BoundTemplate]:
    """The template at `path` checked against the source at `url` (the engine is the caller's to dispose)."""
    template = load_template(path)
    engine = open_source(url)
    try:
        with source_errors(url), engine.connect() as conn:
            return engine, bind_template(template, conn, collections)
    except BaseException:
        engine.dispose()
        raise


def typed_key(reader: CollectionReader, text: str) -> Any:
    """A key typed on the command line, as the key column holds it."""
    try:
        python_type = reader.key_column.type.python_type
    except NotImplementedError:
        return text
    if python_type is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"key {text!r} is not an integer, as column '{reader.key_column.name}' is") from None
    return text
