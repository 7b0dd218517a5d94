"""The jdbc sink's own writes do not come back through CDC of the same database; a plain write does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from streams.catalog.dburl import make_engine
from streams.catalog.legacy import create_legacy_schema
from streams.migration.template import load_template
from streams.stores.relational import RelationalStore
from tests import relational_checks as checks
from tests.integration.pipeline import create_topic, read_topic
from tests.integration.processes import AppProcess, wait_for
from tests.integration.services import scratch_database, service_url, unique_name
from tests.migration_oracle import CATALOG_TEMPLATE

SOURCES = {"postgres": "cdc-postgres", "mariadb": "cdc-mysql"}


@pytest.fixture(params=list(SOURCES))
def database(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    with scratch_database(service_url(request.param), prefix="tf_echo") as url:
        engine = make_engine(url)
        create_legacy_schema(engine)
        engine.dispose()
        try:
            yield request.param, url
        finally:
            if request.param == "postgres":
                engine = make_engine(url)
                with engine.begin() as conn:  # the slot would keep WAL on the server after the database is gone
                    conn.execute(text("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                      "WHERE database = current_database()"))
                engine.dispose()


def test_jdbc_sink_writes_produce_no_change_events(database: tuple[str, str], kafka_bootstrap: str,
                                                    tmp_path: Path) -> None:
    server, url = database
    stream = unique_name("tfecho")
    topic = f"{stream}.cdc"
    create_topic(kafka_bootstrap, topic, 1)
    store = RelationalStore(url, load_template(CATALOG_TEMPLATE), writer=f"{stream}.jdbc")
    store.open(["tracks"])  # creates the bookkeeping tables before the capture starts
    cdc = AppProcess([SOURCES[server], "--stream", stream, "--label", "cdc", "--", f"--url={url}"], tmp_path, "cdc")
    cdc.start()
    try:
        cdc.wait_ready()
        written = [checks.track(i) for i in range(1, 21)]
        assert store.apply("tracks", [checks.upsert(d) for d in written]).applied == 20
        newer = checks.track(5, version=10, title="Retitled")
        assert store.apply("tracks", [checks.upsert(newer), checks.delete(6, checks.stamp(100))]).applied == 2
        # A plain write after them: once it is on the topic, everything before it has been read.
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO genre (genre_id, name) VALUES (900, 'Plain write')"))
        engine.dispose()

        def plain_write_delivered() -> bool:
            return any(b"Plain write" in value for _, value, _ in read_topic(kafka_bootstrap, topic))

        wait_for(plain_write_delivered, 60, "the plain write on the CDC topic", cdc)
        changes = [orjson.loads(value) for _, value, _ in read_topic(kafka_bootstrap, topic)]
        assert [(c["op"], c["table"], c["after"]["name"]) for c in changes] == [("c", "genre", "Plain write")]
        assert store.get_many("tracks", [5])[5]["title"] == "Retitled"  # the writes were there to be seen
    finally:
        cdc.stop()
        store.close()
