"""Finds the real services through the environment (`deploy/local/stack env`); a missing one fails the test.

Set TUNEFLOW_TESTCONTAINERS=1 on a machine with a Docker engine to start them with testcontainers instead.
"""

from __future__ import annotations

import os
import uuid

import pytest

SERVICES = {
    "kafka": "TUNEFLOW_KAFKA_BOOTSTRAP",
    "mongo": "TUNEFLOW_MONGO_URI",
    "postgres": "TUNEFLOW_PG_URL",
    "mariadb": "TUNEFLOW_MYSQL_URL",
    "prometheus": "TUNEFLOW_PROMETHEUS_URL",
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
