"""Database URLs as users write them, turned into SQLAlchemy engines with the drivers tuneflow ships."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from streams.errors import ConfigError
from streams.masking import mask_secrets

DialectKind = Literal["postgresql", "mysql", "sqlite"]

# User-facing scheme (and the SQLAlchemy spellings we also accept) -> SQLAlchemy driver scheme.
_SCHEMES: dict[str, str] = {
    "postgresql": "postgresql+psycopg2",
    "postgres": "postgresql+psycopg2",
    "postgresql+psycopg2": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "mysql+pymysql": "mysql+pymysql",
    "mariadb+pymysql": "mysql+pymysql",
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
}
SUPPORTED = (
    "postgresql://, mysql://, mariadb:// or sqlite:/// "
    "(e.g. postgresql://user:password@host:5432/db, mariadb://user:password@host:3306/db, sqlite:///catalog.db)"
)



def to_sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy URL for a user's database URL; anything unsupported is a ConfigError."""
    scheme, separator, rest = url.strip().partition("://")
    driver = _SCHEMES.get(scheme.lower()) if separator else None
    if driver is None:
        raise ConfigError(
            f"unsupported database URL {mask_password(url)!r}: supported schemes are {SUPPORTED}"
        )
    try:
        parsed = make_url(f"{driver}://{rest}")
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"malformed database URL {mask_password(url)!r}: {exc}") from exc
    if driver == "mysql+pymysql" and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed.render_as_string(hide_password=False)


def mask_password(url: str) -> str:
    """The URL with its password (in the credentials or the query string) replaced by ***."""
    return mask_secrets(url)


def error_reason(exc: BaseException, url: str | None = None) -> str:
    """A database error's own message on one line, for a user: the driver's text, never the password of `url`."""
    reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:500]
    password = make_url(to_sqlalchemy_url(url)).password if url else None
    # Drivers do not echo passwords; this is a safety net, skipped when the password also spells a shown part.
    if password and str(password) not in mask_password(url or ""):
        return reason.replace(str(password), "***")
    return reason


# PostgreSQL SQLSTATE class 28 (invalid authorization); MySQL/MariaDB 1044/1045 (access denied).
_PG_AUTH_CLASS = "28"
_MYSQL_ACCESS_DENIED = (1044, 1045)


def credentials_refused(exc: BaseException) -> bool:
    """The server answered, and refused the user or password: retrying cannot help."""
    original = getattr(exc, "orig", None) or exc
    code = getattr(original, "pgcode", None)
    if isinstance(code, str):
        return code.startswith(_PG_AUTH_CLASS)
    args = getattr(original, "args", ())
    if args and isinstance(args[0], int):
        return args[0] in _MYSQL_ACCESS_DENIED
    return "password authentication failed" in str(original)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for a user's URL: connections are checked before use; SQLite gets WAL and foreign keys."""
    target = to_sqlalchemy_url(url)
    if target.startswith("postgresql"):
        # Catalog text is multilingual whatever the server's default client encoding is.
        kwargs.setdefault("client_encoding", "utf8")
    engine = create_engine(target, pool_pre_ping=True, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def dialect_kind(engine: Engine) -> DialectKind:
    name = engine.dialect.name
    if name == "postgresql":
        return "postgresql"
    if name in ("mysql", "mariadb"):
        return "mysql"
    if name == "sqlite":
        return "sqlite"
    raise ConfigError(f"unsupported database dialect {name!r}: supported schemes are {SUPPORTED}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
    finally:
        cursor.close()
