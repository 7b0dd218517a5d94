"""Fixtures for tests against the real local service stack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine

from streams.catalog.dburl import to_sqlalchemy_url
from tests.integration.services import scratch_database, service_url
from tests.integration.testcontainers_stack import maybe_start_containers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session", autouse=True)
def _containers() -> Iterator[None]:
    with maybe_start_containers():
        yield


def _scratch_engine(server_url: str) -> Iterator[Engine]:
    """A fresh database on the real server for one test, dropped afterwards."""
    with scratch_database(server_url) as url:
        engine = create_engine(to_sqlalchemy_url(url))
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    yield from _scratch_engine(service_url("postgres"))


@pytest.fixture
def mariadb_engine() -> Iterator[Engine]:
    yield from _scratch_engine(service_url("mariadb"))


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
