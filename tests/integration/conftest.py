"""Fixtures for tests against the real local service stack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from streams.catalog.dburl import to_sqlalchemy_url
from tests.integration.services import service_url, unique_name
from tests.integration.testcontainers_stack import maybe_start_containers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session", autouse=True)
def _containers() -> Iterator[None]:
    with maybe_start_containers():
        yield


def _scratch_database(admin_url: str, kind: str) -> Iterator[Engine]:
    """A fresh database on the real server for one test, dropped afterwards."""
    admin = create_engine(to_sqlalchemy_url(admin_url), isolation_level="AUTOCOMMIT")
    name = unique_name("tf_test")
    quote = '"' if kind == "postgres" else "`"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {quote}{name}{quote}"))
    engine = create_engine(make_url(to_sqlalchemy_url(admin_url)).set(database=name))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            if kind == "postgres":
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    yield from _scratch_database(service_url("postgres"), "postgres")


@pytest.fixture
def mariadb_engine() -> Iterator[Engine]:
    yield from _scratch_database(service_url("mariadb"), "mariadb")


@pytest.fixture
def kafka_bootstrap() -> str:
    return service_url("kafka")


@pytest.fixture
def mongo_uri() -> str:
    return service_url("mongo")


@pytest.fixture
def postgres_url() -> str:
    return service_url("postgres")


@pytest.fixture
def prometheus_url() -> str:
    return service_url("prometheus")
