"""Opening the platform state: which database, its engine, its schema brought to the latest revision."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.engine import make_url

from streams import settings
from streams.catalog.dburl import make_engine, mask_password, to_sqlalchemy_url
from streams.errors import ConfigError, ServiceUnavailableError, TuneflowError
from streams.state.store import SQLITE_BEGIN, StateStore, translate_errors, writer

MIGRATIONS = Path(__file__).parent / "migrations"
STATE_DIALECTS = ("sqlite", "postgresql")
STATE_SCHEMES = "sqlite:///path/to/tuneflow.db or postgresql://user:password@host:5432/db"
CONNECT_TIMEOUT_S = 10
SQLITE_LOCK_TIMEOUT_S = 10
# pg_advisory_xact_lock key serialising schema upgrades of concurrent `open_state` calls.
MIGRATION_LOCK_KEY = 0x7475_6E65_666C_6F77
_UPGRADE_LOCK = threading.Lock()


def default_url() -> str:
    """TUNEFLOW_DB_URL, else SQLite in TUNEFLOW_HOME (default ~/.tuneflow, created if missing)."""
    if not os.environ.get("TUNEFLOW_DB_URL"):
        home = settings.home()
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create TUNEFLOW_HOME {str(home)!r}: {exc.strerror or exc}") from exc
    return settings.state_db_url()


def open_state(url: str | None = None) -> StateStore:
    """The platform state at `url` (default: `default_url()`), its schema upgraded to the latest revision.

    ConfigError for a URL tuneflow cannot use; ServiceUnavailableError (URL masked) when the database
    cannot be reached or refuses the credentials.
    """
    target = default_url() if url is None else url
    engine = state_engine(target)
    try:
        with translate_errors(target):
            upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return StateStore(engine, target)


def state_engine(url: str) -> Engine:
    """An engine for the state database; only SQLite and PostgreSQL hold the platform state."""
    target = to_sqlalchemy_url(url)
    dialect = make_url(target).get_backend_name()
    if dialect not in STATE_DIALECTS:
        raise ConfigError(
            f"unsupported state database URL {mask_password(url)!r}: the platform state lives in SQLite or "
            f"PostgreSQL, e.g. {STATE_SCHEMES}"
        )
    if dialect == "sqlite":
        _prepare_sqlite_file(url, make_url(target).database)
        engine = make_engine(url)
        event.listen(engine, "connect", _sqlite_manual_transactions)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return make_engine(url, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})


def upgrade(engine: Engine) -> None:
    """Bring the schema to the latest revision; concurrent callers wait for each other's upgrade."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as connection:
        if MigrationContext.configure(connection).get_current_revision() == head:
            return
    # Alembic's `context` and `op` are module globals: one upgrade per process at a time, taken before the
    # database lock so that two threads never wait on each other's locks in opposite order.
    with _UPGRADE_LOCK, writer(engine).connect() as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        try:
            command.upgrade(alembic_config(connection), "head")
        except CommandError as exc:
            raise TuneflowError(
                f"cannot upgrade the state schema to revision {head}: {exc} "
                "(was this database written by a newer tuneflow?)"
            ) from exc


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configured in code: the migrations shipped in this package, no alembic.ini needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _prepare_sqlite_file(url: str, database: str | None) -> None:
    """Put a file database in WAL mode before the engine's connections open it.

    Only the first switch to WAL needs the file to itself: it fails at once rather than waiting while another
    connection holds a lock, so it is retried here; once the file is in WAL mode the engine's PRAGMA is a no-op.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    directory = Path(database).resolve().parent
    if not directory.is_dir():
        raise ConfigError(
            f"cannot open the state database {mask_password(url)!r}: directory {str(directory)!r} does not exist"
        )
    deadline = time.monotonic() + SQLITE_LOCK_TIMEOUT_S
    try:
        connection = sqlite3.connect(database, timeout=SQLITE_LOCK_TIMEOUT_S, isolation_level=None)
        try:
            while True:
                try:
                    connection.execute("PRAGMA journal_mode=WAL")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise ServiceUnavailableError(f"cannot use the state database at {mask_password(url)}: {exc}") from exc


def _sqlite_manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    # sqlite3 would start transactions itself, and only before DML; _sqlite_begin starts them all instead.
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql(connection.get_execution_options().get(SQLITE_BEGIN, "BEGIN"))
