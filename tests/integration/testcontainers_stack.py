"""Opt-in: with TUNEFLOW_TESTCONTAINERS=1 and a Docker engine, start the services as containers.

The default (and CI here, which has no Docker engine) uses the stack `deploy/local/stack up` starts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def maybe_start_containers() -> Iterator[None]:
    if os.environ.get("TUNEFLOW_TESTCONTAINERS") != "1":
        yield
        return
    try:
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer
        from testcontainers.mysql import MySqlContainer
        from testcontainers.postgres import PostgresContainer
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise RuntimeError("TUNEFLOW_TESTCONTAINERS=1 needs the extra: pip install 'tuneflow[containers]'") from exc

    with contextlib.ExitStack() as stack:
        kafka = stack.enter_context(KafkaContainer("apache/kafka:4.0.0").with_kraft())
        mongo = stack.enter_context(MongoDbContainer("mongo:7"))
        postgres = stack.enter_context(
            PostgresContainer("postgres:15", username="tuneflow", password="tuneflow", dbname="tuneflow")
            .with_command("postgres -c wal_level=logical")
        )
        mariadb = stack.enter_context(
            MySqlContainer("mariadb:10.11", username="root", password="tuneflow", dbname="tuneflow")
            .with_command("--log-bin --binlog-format=ROW --binlog-row-image=FULL "
                          "--binlog-row-metadata=FULL --server-id=1")
        )
        os.environ.update(
            TUNEFLOW_KAFKA_BOOTSTRAP=kafka.get_bootstrap_server(),
            TUNEFLOW_MONGO_URI=mongo.get_connection_url(),
            TUNEFLOW_PG_URL=postgres.get_connection_url().replace("+psycopg2", ""),
            TUNEFLOW_MYSQL_URL=mariadb.get_connection_url().replace("+pymysql", ""),
        )
        yield
