"""The platform state on a real PostgreSQL server: migrations, the repository flow, concurrency, bad credentials."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC
from urllib.parse import quote

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from streams.catalog.dburl import mask_password
from streams.errors import ConfigError, ServiceUnavailableError
from streams.state import ReleaseStatus, StateStore, StreamStatus, open_state
from streams.state.models import Base
from tests.integration.services import scratch_database

pytestmark = pytest.mark.integration

RAW_PROPERTIES = '  {"deployer.count" : 2,\n\t"app.mongo.batch-size":"500" ,  "zeta": "last", "alpha": "first" } \n'
PARSED_PROPERTIES = {"deployer.count": 2, "app.mongo.batch-size": "500", "zeta": "last", "alpha": "first"}


@pytest.fixture
def state_url(postgres_url: str) -> Iterator[str]:
    with scratch_database(postgres_url, "tf_state") as url:
        yield url


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    with open_state(state_url) as opened:
        yield opened


def _with_password(url: str, password: str) -> str:
    return make_url(url).set(password=password).render_as_string(hide_password=False)


def test_the_schema_is_migrated_to_the_latest_revision(store: StateStore) -> None:
    inspector = inspect(store.engine)
    assert {"alembic_version", "app_registrations", "streams", "releases"} <= set(inspector.get_table_names())
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0003_verify_runs"]
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    columns = {c["name"]: c for c in inspector.get_columns("releases")}
    assert set(columns) == {"id", "stream_id", "number", "manifest", "status", "created_at", "updated_at"}
    assert getattr(columns["created_at"]["type"], "timezone", False) is True
    [foreign_key] = inspector.get_foreign_keys("releases")
    assert foreign_key["options"].get("ondelete") == "CASCADE"


def test_reopening_is_a_no_op_upgrade(state_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_state(state_url) as first:
        first.create_stream("keep", "kafka | log", "kafka | log")

    def no_upgrade(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("an up-to-date schema must not be migrated again")

    monkeypatch.setattr("streams.state.db.command.upgrade", no_upgrade)
    with open_state(state_url) as again:
        assert [s.name for s in again.list_streams()] == ["keep"]


def test_concurrent_opens_of_a_new_database_migrate_once(state_url: str) -> None:
    errors: list[BaseException] = []
    stores: list[StateStore] = []

    def open_one() -> None:
        try:
            stores.append(open_state(state_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert errors == []
        assert len(stores) == 4
        with stores[0].engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0003_verify_runs"]
    finally:
        for opened in stores:
            opened.close()


def test_apps_streams_and_releases(store: StateStore) -> None:
    store.register_app("source", "kafka", "python:sources.kafka:KafkaSource", version="1.0")
    store.register_app("source", "kafka", "python:sources.kafka:KafkaSource", version="1.1", default=True)
    store.register_app("sink", "log", "python:sinks.log:LogSink", version="1.0")
    assert store.get_app("kafka").version == "1.1"
    assert [(a.kind, a.name, a.version, a.is_default) for a in store.list_apps()] == [
        ("sink", "log", "1.0", True), ("source", "kafka", "1.0", False), ("source", "kafka", "1.1", True),
    ]
    with pytest.raises(ConfigError, match=r"unknown app 'kafak'\. Did you mean 'kafka'\?"):
        store.get_app("kafak")
    assert [a.version for a in store.unregister_app("kafka", version="1.0")] == ["1.0"]

    created = store.create_stream("ingest", "kafka --topic=raw |log", "kafka --topic=raw | log", "raw to log")
    assert created.status is StreamStatus.UNDEPLOYED
    assert created.created_at.tzinfo is UTC
    with pytest.raises(ConfigError, match="already exists"):
        store.create_stream("ingest", "kafka | log", "kafka | log")
    with pytest.raises(ConfigError, match=r"unknown stream 'ingset'\. Did you mean 'ingest'\?"):
        store.get_stream("ingset")

    store.save_deployment_properties("ingest", RAW_PROPERTIES, PARSED_PROPERTIES)
    store.set_stream_status("ingest", StreamStatus.DEPLOYING)
    manifest = {"apps": [{"label": "kafka", "version": "1.1", "properties": {"topic": "raw"}}], "note": "é ✓"}
    first = store.add_release("ingest", manifest)
    second = store.add_release("ingest", {**manifest, "apps": []}, status="failed")
    third = store.add_release("ingest", manifest)
    assert [first.number, second.number, third.number] == [1, 2, 3]
    assert [r.status for r in store.releases("ingest")] == [
        ReleaseStatus.SUPERSEDED, ReleaseStatus.FAILED, ReleaseStatus.DEPLOYED,
    ]
    assert store.release("ingest", 1).manifest == manifest
    assert store.set_release_status("ingest", 3, "undeployed").status is ReleaseStatus.UNDEPLOYED
    latest = store.latest_release("ingest")
    assert latest is not None and latest.number == 3 and latest.status is ReleaseStatus.UNDEPLOYED

    stream = store.get_stream("ingest")
    assert stream.status is StreamStatus.DEPLOYING
    assert stream.deployment_properties_raw == RAW_PROPERTIES
    assert stream.deployment_properties == PARSED_PROPERTIES
    assert list(stream.deployment_properties or {}) == list(PARSED_PROPERTIES)
    assert stream.updated_at > stream.created_at

    store.delete_stream("ingest")
    assert store.list_streams() == []
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM releases")).scalar_one() == 0


def test_timestamps_come_back_in_utc_whatever_the_session_time_zone(state_url: str) -> None:
    tokyo = f"{state_url}?options={quote('-c timezone=Asia/Tokyo')}"
    with open_state(tokyo) as store:
        with store.engine.connect() as conn:
            assert conn.execute(text("SHOW timezone")).scalar_one() == "Asia/Tokyo"
        created = store.create_stream("s", "kafka | log", "kafka | log")
        stored = store.get_stream("s")
    assert stored.created_at == created.created_at
    assert stored.created_at.tzinfo is UTC


def test_concurrent_releases_get_distinct_consecutive_numbers(state_url: str) -> None:
    with open_state(state_url) as one, open_state(state_url) as two:
        one.create_stream("s", "kafka | log", "kafka | log")
        errors: list[BaseException] = []

        def add(store: StateStore, tag: str) -> None:
            try:
                for n in range(15):
                    store.add_release("s", {"by": tag, "n": n})
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=add, args=(s, t)) for s, t in ((one, "one"), (two, "two"), (one, "three"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        releases = two.releases("s")
        assert [r.number for r in releases] == list(range(1, 46))
        assert [r.status for r in releases].count(ReleaseStatus.DEPLOYED) == 1
        assert releases[-1].status is ReleaseStatus.DEPLOYED


def test_a_wrong_password_is_unavailable_and_never_shown(postgres_url: str) -> None:
    wrong = "not-the-Pa55word-42"
    url = _with_password(postgres_url, wrong)
    with pytest.raises(ServiceUnavailableError) as caught:
        open_state(url)
    message = str(caught.value)
    assert wrong not in message
    assert mask_password(postgres_url) in message
    assert "password authentication failed" in message


def test_a_missing_database_is_unavailable(postgres_url: str) -> None:
    url = f"{postgres_url.split('?', 1)[0].rsplit('/', 1)[0]}/tf_state_does_not_exist"
    with pytest.raises(ServiceUnavailableError, match="tf_state_does_not_exist"):
        open_state(url)

