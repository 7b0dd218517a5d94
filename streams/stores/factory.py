"""Opens a document store from its URI (`embedded://…` or `mongodb://…`), the one place that knows both."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.errors import ConfigError
from streams.stores.base import DocumentStore
from streams.stores.embedded import SCHEME as EMBEDDED_SCHEME
from streams.stores.embedded import EmbeddedStore

if TYPE_CHECKING:
    from streams.stores.relational import RelationalStore

MONGO_SCHEMES = ("mongodb://", "mongodb+srv://")
SCHEMES = (EMBEDDED_SCHEME, *MONGO_SCHEMES)


def open_store(uri: str, database: str = "catalog") -> DocumentStore:
    """`embedded:///abs/dir` or `embedded://relative/dir` (SQLite files), `mongodb[+srv]://…` (MongoDB)."""
    if uri.startswith(EMBEDDED_SCHEME):
        if not uri.removeprefix(EMBEDDED_SCHEME):
            raise ConfigError(f"{uri!r} names no directory: use embedded:///absolute/dir or embedded://relative/dir")
        return EmbeddedStore.from_uri(uri, database)
    if uri.startswith(MONGO_SCHEMES):
        from streams.stores.mongo import MongoStore  # pymongo loads only when MongoDB is used

        return MongoStore(uri, database)
    scheme, separator, _ = uri.partition("://")
    # Only the scheme: the rest of a mistyped URI may hold a password.
    given = f"scheme {scheme + separator!r}" if separator else "a value without a scheme"
    raise ConfigError(f"unsupported store URI ({given}); supported: {', '.join(f'{s}…' for s in SCHEMES)}")


def open_relational_store(url: str, template: str, collection: str, writer: str = "tuneflow") -> RelationalStore:
    """The documents of `collection` in the tables the template at `template` maps, at the database `url`
    (postgresql://…, mariadb://…, mysql://…, sqlite:///…); `open()` checks the template against the database."""
    from streams.migration.template import load_template
    from streams.stores.relational import RelationalStore

    store = RelationalStore(url, load_template(template), writer=writer)
    store.collections = [collection]
    return store
