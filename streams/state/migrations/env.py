"""Alembic environment of the platform state.

`streams.state.db.upgrade` hands over an open connection (in `config.attributes["connection"]`) whose
transaction already holds the migration lock. Without one, the URL comes from the `sqlalchemy.url` option,
else from TUNEFLOW_DB_URL / TUNEFLOW_HOME, so `alembic revision` and `--sql` work for maintainers too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from streams import settings
from streams.catalog.dburl import make_engine, to_sqlalchemy_url
from streams.state.models import Base

VERSION_TABLE = "alembic_version"


def _url() -> str:
    return context.config.get_main_option("sqlalchemy.url") or settings.state_db_url()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=to_sqlalchemy_url(_url()),
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as fresh:
            _run(fresh)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
