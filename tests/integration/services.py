"""Finds the real services through the environment (`deploy/local/stack env`); a missing one fails the test.

Set TUNEFLOW_TESTCONTAINERS=1 on a machine with a Docker engine to start them with testcontainers instead.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from streams.catalog.dburl import to_sqlalchemy_url

SERVICES = {
    "kafka": "TUNEFLOW_KAFKA_BOOTSTRAP",
    "mongo": "TUNEFLOW_MONGO_URI",
    "postgres": "TUNEFLOW_PG_URL",
    "mariadb": "TUNEFLOW_MYSQL_URL",
    "prometheus": "TUNEFLOW_PROMETHEUS_URL",
    "kubernetes": "TUNEFLOW_KUBECONFIG",
}


def service_url(name: str) -> str:
    variable = SERVICES[name]
    value = os.environ.get(variable)
    if not value:
        pytest.fail(
            f"{variable} is not set: the {name} service is required. Start the stack with "
            f"`make stack-up` and export its settings with `eval \"$(deploy/local/stack env)\"`, "
            "or run the tests with `make test`.",
            pytrace=False,
        )
    return value


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def scratch_database(server_url: str, prefix: str = "tf_test") -> Iterator[str]:
    """A fresh database on the PostgreSQL or MariaDB server of `server_url`, as a URL of the same scheme.

    Dropped afterwards, even with connections still open (PostgreSQL: WITH (FORCE)).
    """
    admin = create_engine(to_sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    postgres = admin.dialect.name == "postgresql"
    name = unique_name(prefix)
    quoted = f'"{name}"' if postgres else f"`{name}`"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {quoted}"))
    try:
        yield f"{server_url.split('?', 1)[0].rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {quoted}" + (" WITH (FORCE)" if postgres else "")))
        admin.dispose()


def drop_captures(url: str, wait_s: float = 30) -> None:
    """The replication slots and publications in PostgreSQL database `url` (a slot keeps WAL on the server after its
    database is gone), once no source reads them (a slot is busy a moment after its reader stopped)."""
    engine = create_engine(to_sqlalchemy_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and conn.execute(text(
                    "SELECT count(*) FROM pg_replication_slots WHERE database = current_database() AND active")
                    ).scalar():
                time.sleep(0.2)
            conn.execute(text("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                              "WHERE database = current_database() AND NOT active"))
            for name in conn.execute(text("SELECT pubname FROM pg_publication")).scalars().all():
                conn.execute(text(f'DROP PUBLICATION "{name}"'))
    finally:
        engine.dispose()
