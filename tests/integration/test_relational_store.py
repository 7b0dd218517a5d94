"""The relational document store on real PostgreSQL and MariaDB, several writers at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import relational_checks as checks
from tests.integration.services import scratch_database, service_url


@pytest.fixture(params=["postgres", "mariadb"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    with scratch_database(service_url(request.param)) as scratch:
        yield scratch


def test_relational_store_on_a_real_server(url: str) -> None:
    checks.run_all(url, writers=4)
