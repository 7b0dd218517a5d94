"""The platform state on SQLite: schema migrations, the repository API, release numbering, concurrent users."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect, text

from streams.errors import ConfigError, ServiceUnavailableError, TuneflowError
from streams.state import ReleaseStatus, StateStore, StreamStatus, default_url, open_state
from streams.state.db import alembic_config, upgrade
from streams.state.models import Base
from streams.state.store import translate_errors

KAFKA_URI = "python:sources.kafka:KafkaSource"
LOG_URI = "python:sinks.log:LogSink"
RAW_PROPERTIES = '  {"app.mongo.batch-size" : "500",\n\t"deployer.log.count":2 ,  "note": "café  ✓" }  \n'
PARSED_PROPERTIES = {"app.mongo.batch-size": "500", "deployer.log.count": 2, "note": "café  ✓"}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[StateStore]:
    with open_state(db_url) as opened:
        yield opened


def _table_rows(store: StateStore, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


# --- schema ---------------------------------------------------------------------------------------------


def test_opening_a_new_database_creates_the_schema_at_the_latest_revision(store: StateStore) -> None:
    inspector = inspect(store.engine)
    assert set(inspector.get_table_names()) == {"alembic_version", "app_registrations", "streams", "releases",
                                               "migration_runs", "migration_chunks", "verify_runs", "verify_ranges",
                                               "migration_switches", "switch_history", "switch_acks"}
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0004"]
    columns = {table: {c["name"] for c in inspector.get_columns(table)}
               for table in ("app_registrations", "streams", "releases")}
    assert columns["app_registrations"] == {"id", "kind", "name", "uri", "version", "is_default", "registered_at"}
    assert columns["streams"] == {
        "id", "name", "definition", "canonical", "description", "status",
        "deployment_properties_raw", "deployment_properties", "created_at", "updated_at",
    }
    assert columns["releases"] == {"id", "stream_id", "number", "manifest", "status", "created_at", "updated_at"}
    uniques = {table: {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
               for table in ("app_registrations", "streams", "releases")}
    assert uniques == {
        "app_registrations": {("kind", "name", "version")},
        "streams": {("name",)},
        "releases": {("stream_id", "number")},
    }
    [foreign_key] = inspector.get_foreign_keys("releases")
    assert foreign_key["referred_table"] == "streams"
    assert foreign_key["constrained_columns"] == ["stream_id"]
    assert foreign_key["options"].get("ondelete") == "CASCADE"


def test_the_migration_creates_exactly_what_the_models_declare(store: StateStore) -> None:
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_reopening_an_existing_database_runs_no_migration(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_state(db_url) as first:
        first.create_stream("keep", "kafka | log", "kafka | log")

    def no_upgrade(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("an up-to-date schema must not be migrated again")

    monkeypatch.setattr("streams.state.db.command.upgrade", no_upgrade)
    with open_state(db_url) as again:
        assert [s.name for s in again.list_streams()] == ["keep"]
        with again.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0004"]


def test_running_the_migrations_on_an_up_to_date_schema_changes_nothing(store: StateStore) -> None:
    store.create_stream("keep", "kafka | log", "kafka | log")
    with store.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    upgrade(store.engine)
    with store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0004"
    assert [s.name for s in store.list_streams()] == ["keep"]


def test_a_database_from_a_newer_tuneflow_is_refused(db_url: str) -> None:
    with open_state(db_url) as store, store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    with pytest.raises(TuneflowError, match="newer tuneflow"):
        open_state(db_url)


def test_the_default_database_is_sqlite_in_tuneflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "not" / "yet" / "home"
    monkeypatch.setenv("TUNEFLOW_HOME", str(home))
    monkeypatch.delenv("TUNEFLOW_DB_URL", raising=False)
    assert default_url() == f"sqlite:///{home / 'tuneflow.db'}"
    with open_state() as store:
        store.create_stream("s", "kafka | log", "kafka | log")
    assert (home / "tuneflow.db").is_file()


def test_tuneflow_db_url_chooses_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = tmp_path / "elsewhere.db"
    monkeypatch.setenv("TUNEFLOW_DB_URL", f"sqlite:///{chosen}")
    with open_state() as store:
        assert store.url == f"sqlite:///{chosen}"
    assert chosen.is_file()
    assert not (tmp_path / "tuneflow-home" / "tuneflow.db").exists()


@pytest.mark.parametrize("url", ["mysql://u:s3cr3t-pw@127.0.0.1:3306/db", "redis://u:s3cr3t-pw@localhost/0"])
def test_unsupported_schemes_are_config_errors_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_state(url)
    message = str(caught.value)
    assert "s3cr3t-pw" not in message
    assert "***" in message
    assert "sqlite" in message.lower()


def test_a_sqlite_file_in_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        open_state(f"sqlite:///{tmp_path / 'missing' / 'state.db'}")


def test_a_sqlite_path_that_is_no_file_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(ServiceUnavailableError, match="unable to open database file"):
        open_state(f"sqlite:///{tmp_path / 'taken'}")


def test_an_unreachable_server_is_unavailable_and_the_password_stays_masked() -> None:
    url = "postgresql://tuneflow:s3cr3t-pw@127.0.0.1:1/tuneflow"
    with pytest.raises(ServiceUnavailableError) as caught:
        open_state(url)
    message = str(caught.value)
    assert "postgresql://tuneflow:***@127.0.0.1:1/tuneflow" in message
    assert "s3cr3t-pw" not in message


# --- apps -----------------------------------------------------------------------------------------------


def test_the_first_version_of_an_app_becomes_its_default(store: StateStore) -> None:
    first = store.register_app("source", "kafka", KAFKA_URI, version="1.0.0")
    second = store.register_app("source", "kafka", "python:sources.kafka:Other", version="1.1.0")
    assert first.is_default and not second.is_default
    assert store.get_app("kafka") == first
    assert store.get_app("kafka", kind="source", version="1.1.0") == second
    assert first.registered_at.tzinfo is UTC


def test_registering_as_default_moves_the_default(store: StateStore) -> None:
    store.register_app("source", "kafka", KAFKA_URI, version="1.0.0")
    newer = store.register_app("source", "kafka", KAFKA_URI, version="2.0.0", default=True)
    assert newer.is_default
    assert [(a.version, a.is_default) for a in store.list_apps()] == [("1.0.0", False), ("2.0.0", True)]


def test_set_default_version_keeps_one_default(store: StateStore) -> None:
    store.register_app("sink", "log", LOG_URI, version="1.0.0")
    store.register_app("sink", "log", LOG_URI, version="1.1.0")
    chosen = store.set_default_version("log", "1.1.0")
    assert chosen.version == "1.1.0" and chosen.is_default
    assert store.get_app("log", kind="sink").version == "1.1.0"
    assert [a.is_default for a in store.list_apps("sink")] == [False, True]
    with pytest.raises(ConfigError, match=r"no version '1\.2\.0'\. Did you mean '1\.1\.0'\?"):
        store.set_default_version("log", "1.2.0")


def test_the_version_defaults_to_the_installed_distribution(store: StateStore) -> None:
    app = store.register_app("sink", "log", LOG_URI)
    assert app.version == importlib.metadata.version("tuneflow")
    with pytest.raises(ConfigError, match="give a version"):
        store.register_app("sink", "ghost", "python:no_such_module_here:Sink")
    assert store.register_app("sink", "ghost", "python:no_such_module_here:Sink", version="0.3").version == "0.3"


def test_registering_the_same_version_twice_needs_force(store: StateStore) -> None:
    store.register_app("sink", "log", LOG_URI, version="1.0")
    with pytest.raises(ConfigError, match="already registered"):
        store.register_app("sink", "log", "python:sinks.log:Other", version="1.0")
    replaced = store.register_app("sink", "log", "python:sinks.log:Other", version="1.0", force=True)
    assert replaced.uri == "python:sinks.log:Other" and replaced.is_default
    assert len(store.list_apps()) == 1


def test_the_same_name_for_two_kinds_needs_the_kind(store: StateStore) -> None:
    store.register_app("source", "file", "python:sources.file:FileSource", version="1.0")
    store.register_app("sink", "file", "python:sinks.file:FileSink", version="1.0")
    with pytest.raises(ConfigError, match="names a sink and a source app: say which kind"):
        store.get_app("file")
    assert store.get_app("file", kind="sink").uri == "python:sinks.file:FileSink"
    assert [(a.kind, a.name) for a in store.list_apps()] == [("sink", "file"), ("source", "file")]
    assert [a.kind for a in store.list_apps(kind="source")] == ["source"]


def test_unknown_apps_suggest_a_close_name(store: StateStore) -> None:
    store.register_app("processor", "normalize", "python:processors.normalize:Normalize", version="1.0")
    with pytest.raises(ConfigError, match=r"unknown app 'normalise'\. Did you mean 'normalize'\?"):
        store.get_app("normalise")
    with pytest.raises(ConfigError, match=r"unknown sink app 'normalize'\.$"):
        store.get_app("normalize", kind="sink")
    with pytest.raises(ConfigError, match=r"unknown app kind 'procesor'\. Did you mean 'processor'\?"):
        store.get_app("normalize", kind="procesor")


@pytest.mark.parametrize(
    ("kind", "name", "uri", "version", "problem"),
    [
        ("sorce", "kafka", KAFKA_URI, "1", "Did you mean 'source'"),
        ("source", "kaf ka", KAFKA_URI, "1", "invalid app name"),
        ("source", "kafka", "sources.kafka:KafkaSource", "1", "expected python:module:attribute"),
        ("source", "kafka", "python:sources.kafka", "1", "expected python:module:attribute"),
        ("source", "kafka", KAFKA_URI, "1 0", "invalid app version"),
    ],
)
def test_invalid_registrations_are_refused(
        store: StateStore, kind: str, name: str, uri: str, version: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        store.register_app(kind, name, uri, version=version)
    assert store.list_apps() == []


def test_unregister_one_version_or_all(store: StateStore) -> None:
    for version in ("1.0", "1.1", "1.2"):
        store.register_app("sink", "log", LOG_URI, version=version)
    removed = store.unregister_app("log", version="1.1")
    assert [a.version for a in removed] == ["1.1"]
    assert [a.version for a in store.list_apps()] == ["1.0", "1.2"]
    removed = store.unregister_app("log", kind="sink")
    assert [a.version for a in removed] == ["1.0", "1.2"]
    assert store.list_apps() == []
    with pytest.raises(ConfigError, match="unknown app 'log'"):
        store.unregister_app("log")


def test_unregistering_the_default_leaves_no_default(store: StateStore) -> None:
    store.register_app("sink", "log", LOG_URI, version="1.0")
    store.register_app("sink", "log", LOG_URI, version="2.0")
    store.unregister_app("log", version="1.0")
    with pytest.raises(ConfigError, match=r"sink:log has no default version: set one of 2\.0 as the default"):
        store.get_app("log")
    assert store.set_default_version("log", "2.0").is_default


# --- streams --------------------------------------------------------------------------------------------


def test_stream_lifecycle(store: StateStore) -> None:
    created = store.create_stream("ingest", "kafka   --topic=raw|log", "kafka --topic=raw | log", "raw to log")
    assert created.definition == "kafka   --topic=raw|log"
    assert created.canonical == "kafka --topic=raw | log"
    assert created.description == "raw to log"
    assert created.status is StreamStatus.UNDEPLOYED
    assert created.created_at == created.updated_at
    assert created.created_at.tzinfo is UTC
    assert store.get_stream("ingest") == created
    store.create_stream("audit", ":raw > log", ":raw > log")
    assert [s.name for s in store.list_streams()] == ["audit", "ingest"]

    updated = store.update_stream_definition("ingest", "kafka --topic=raw | file", "kafka --topic=raw | file")
    assert (updated.definition, updated.canonical) == ("kafka --topic=raw | file", "kafka --topic=raw | file")
    assert updated.created_at == created.created_at
    assert updated.updated_at > created.updated_at

    assert store.set_stream_status("ingest", "deploying").status is StreamStatus.DEPLOYING
    assert store.set_stream_status("ingest", StreamStatus.DEPLOYED).status is StreamStatus.DEPLOYED
    assert store.get_stream("ingest").status is StreamStatus.DEPLOYED

    deleted = store.delete_stream("ingest")
    assert deleted.name == "ingest" and deleted.status is StreamStatus.DEPLOYED
    assert [s.name for s in store.list_streams()] == ["audit"]


def test_a_duplicate_stream_name_is_refused(store: StateStore) -> None:
    store.create_stream("ingest", "kafka | log", "kafka | log")
    with pytest.raises(ConfigError, match="stream 'ingest' already exists"):
        store.create_stream("ingest", "kafka | file", "kafka | file")
    assert store.get_stream("ingest").definition == "kafka | log"


def test_an_invalid_stream_name_is_refused(store: StateStore) -> None:
    with pytest.raises(ConfigError, match="invalid stream name"):
        store.create_stream("in gest", "kafka | log", "kafka | log")


def test_unknown_streams_suggest_a_close_name(store: StateStore) -> None:
    store.create_stream("ingest-tracks", "kafka | log", "kafka | log")
    calls = [
        lambda: store.get_stream("ingest-track"),
        lambda: store.delete_stream("ingest-track"),
        lambda: store.set_stream_status("ingest-track", "deployed"),
        lambda: store.update_stream_definition("ingest-track", "a", "a"),
        lambda: store.save_deployment_properties("ingest-track", "{}", {}),
        lambda: store.add_release("ingest-track", {}),
        lambda: store.releases("ingest-track"),
        lambda: store.latest_release("ingest-track"),
    ]
    for call in calls:
        with pytest.raises(ConfigError, match=r"unknown stream 'ingest-track'\. Did you mean 'ingest-tracks'\?"):
            call()
    with pytest.raises(ConfigError, match=r"unknown stream 'zzz'\.$"):
        store.get_stream("zzz")


def test_an_unknown_status_suggests_a_close_one(store: StateStore) -> None:
    store.create_stream("s", "kafka | log", "kafka | log")
    with pytest.raises(ConfigError, match=r"unknown stream status 'deployd'\. Did you mean 'deployed'\?"):
        store.set_stream_status("s", "deployd")
    assert store.get_stream("s").status is StreamStatus.UNDEPLOYED


def test_deployment_properties_are_kept_exactly_as_given(db_url: str) -> None:
    with open_state(db_url) as store:
        store.create_stream("s", "kafka | log", "kafka | log")
        saved = store.save_deployment_properties("s", RAW_PROPERTIES, PARSED_PROPERTIES)
        assert saved.deployment_properties_raw == RAW_PROPERTIES
    with open_state(db_url) as reopened:
        stream = reopened.get_stream("s")
    assert stream.deployment_properties_raw == RAW_PROPERTIES
    assert stream.deployment_properties == PARSED_PROPERTIES
    assert list(stream.deployment_properties or {}) == list(PARSED_PROPERTIES)


def test_deployment_properties_must_be_a_json_object(store: StateStore) -> None:
    store.create_stream("s", "kafka | log", "kafka | log")
    with pytest.raises(ConfigError, match="JSON object"):
        store.save_deployment_properties("s", "[1]", [1])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cannot be stored as JSON"):
        store.save_deployment_properties("s", "x", {"when": object()})
    assert store.get_stream("s").deployment_properties_raw is None


# --- releases -------------------------------------------------------------------------------------------


def test_releases_are_numbered_from_one_per_stream(store: StateStore) -> None:
    store.create_stream("a", "kafka | log", "kafka | log")
    store.create_stream("b", "kafka | log", "kafka | log")
    assert store.latest_release("a") is None
    assert store.releases("a") == []
    numbers = [store.add_release("a", {"apps": [{"n": n}]}).number for n in range(1, 6)]
    assert numbers == [1, 2, 3, 4, 5]
    assert store.add_release("b", {"apps": []}).number == 1
    assert [r.number for r in store.releases("a")] == [1, 2, 3, 4, 5]
    latest = store.latest_release("a")
    assert latest is not None
    assert (latest.stream, latest.number, latest.manifest) == ("a", 5, {"apps": [{"n": 5}]})


def test_a_deployed_release_supersedes_the_previous_deployed_one(store: StateStore) -> None:
    store.create_stream("s", "kafka | log", "kafka | log")
    store.add_release("s", {"v": 1})
    store.add_release("s", {"v": 2}, status="failed")
    assert [r.status for r in store.releases("s")] == [ReleaseStatus.DEPLOYED, ReleaseStatus.FAILED]
    store.add_release("s", {"v": 3}, status=ReleaseStatus.DEPLOYED)
    assert [r.status for r in store.releases("s")] == [
        ReleaseStatus.SUPERSEDED, ReleaseStatus.FAILED, ReleaseStatus.DEPLOYED,
    ]


def test_release_lookup_and_status(store: StateStore) -> None:
    store.create_stream("s", "kafka | log", "kafka | log")
    manifest = {"apps": [{"label": "kafka", "uri": KAFKA_URI, "version": "1.0", "properties": {"topic": "raw"}}]}
    added = store.add_release("s", manifest)
    assert added.created_at == added.updated_at and added.created_at.tzinfo is UTC
    assert store.release("s", 1) == added
    changed = store.set_release_status("s", 1, "undeployed")
    assert changed.status is ReleaseStatus.UNDEPLOYED
    assert changed.manifest == manifest
    assert changed.updated_at >= added.updated_at
    assert store.release("s", 1).status is ReleaseStatus.UNDEPLOYED
    with pytest.raises(ConfigError, match="stream 's' has no release 7; its releases: 1"):
        store.release("s", 7)
    with pytest.raises(ConfigError, match=r"unknown release status 'supersede'\. Did you mean 'superseded'\?"):
        store.set_release_status("s", 1, "supersede")
    with pytest.raises(ConfigError, match="cannot be stored as JSON"):
        store.add_release("s", {"bad": float("nan")})
    assert [r.number for r in store.releases("s")] == [1]


def test_deleting_a_stream_deletes_its_releases_and_restarts_numbering(store: StateStore) -> None:
    store.create_stream("s", "kafka | log", "kafka | log")
    store.add_release("s", {"v": 1})
    store.add_release("s", {"v": 2})
    store.delete_stream("s")
    assert _table_rows(store, "releases") == 0
    store.create_stream("s", "kafka | log", "kafka | log")
    assert store.add_release("s", {"v": 1}).number == 1


def test_records_are_frozen_values(store: StateStore) -> None:
    stream = store.create_stream("s", "kafka | log", "kafka | log")
    release = store.add_release("s", {"v": 1})
    app = store.register_app("sink", "log", LOG_URI, version="1")
    for record, field in ((stream, "status"), (release, "number"), (app, "uri")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, field, None)


def test_database_errors_never_carry_the_password() -> None:
    url = "postgresql://tuneflow:s3cr3t-pw@db.example:5432/state"
    failure = sa_exc.OperationalError("SELECT 1", {}, Exception("refused for tuneflow:s3cr3t-pw"))
    with pytest.raises(ServiceUnavailableError) as caught, translate_errors(url):
        raise failure
    assert str(caught.value) == (
        "cannot use the state database at postgresql://tuneflow:***@db.example:5432/state: refused for tuneflow:***"
    )


def test_timestamps_are_utc(store: StateStore) -> None:
    stream = store.create_stream("s", "kafka | log", "kafka | log")
    stored = store.get_stream("s")
    assert stored.created_at == stream.created_at
    assert stored.created_at.utcoffset() == timedelta(0)
