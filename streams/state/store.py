"""The repository over the platform state: plain frozen records in and out, one transaction per call."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Self, TypeVar

from sqlalchemy import Engine, func, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from streams.catalog.dburl import error_reason, mask_password
from streams.dsl import NAME_CHARS, check_stream_name
from streams.errors import ConfigError, ServiceUnavailableError, TuneflowError
from streams.runtime.loader import KINDS
from streams.state.models import AppRegistration, Release, ReleaseStatus, Stream, StreamStatus, utcnow
from streams.suggest import did_you_mean

# Execution option naming the statement that opens a SQLite transaction (the engine's "begin" listener reads it).
SQLITE_BEGIN = "tuneflow_sqlite_begin"
URI_PATTERN = re.compile(r"^python:(?P<module>[A-Za-z_]\w*(\.[A-Za-z_]\w*)*):[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")

_Status = TypeVar("_Status", StreamStatus, ReleaseStatus)


@dataclass(frozen=True)
class AppRecord:
    kind: str
    name: str
    uri: str
    version: str
    is_default: bool
    registered_at: datetime


@dataclass(frozen=True)
class StreamRecord:
    name: str
    definition: str
    canonical: str
    description: str | None
    status: StreamStatus
    deployment_properties_raw: str | None
    deployment_properties: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ReleaseRecord:
    stream: str
    number: int
    manifest: dict[str, Any]
    status: ReleaseStatus
    created_at: datetime
    updated_at: datetime


class StateStore:
    """Apps, streams and releases in the state database; every method runs in its own transaction."""

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self._url = url

    @property
    def url(self) -> str:
        """The database URL with its password masked."""
        return mask_password(self._url)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- apps ---------------------------------------------------------------------------------------

    def register_app(
        self,
        kind: str,
        name: str,
        uri: str,
        version: str | None = None,
        default: bool | None = None,
        force: bool = False,
    ) -> AppRecord:
        """Register one version of an app (`python:module:attr`).

        `version` defaults to the version of the installed distribution holding the module. `default`
        None makes it the default version when its app has none yet; True makes it the default. An
        already registered (kind, name, version) is a ConfigError unless `force` replaces its URI.
        """
        kind = _check_kind(kind)
        _check_app_name(name)
        module = _check_uri(uri)
        version = _check_version(_distribution_version(uri, module) if version is None else version)
        with self._transaction(write=True) as session:
            rows = _app_versions(session, kind, name)
            row = next((r for r in rows if r.version == version), None)
            if row is not None and not force:
                raise ConfigError(
                    f"app {kind}:{name} version {version} is already registered with {row.uri}; "
                    "force the registration to replace it"
                )
            if row is None:
                row = AppRegistration(kind=kind, name=name, uri=uri, version=version, is_default=False)
                session.add(row)
            else:
                row.uri = uri
                row.registered_at = utcnow()
            others = [r for r in rows if r is not row]
            if default is None:
                row.is_default = row.is_default or not any(r.is_default for r in others)
            else:
                row.is_default = default
            if row.is_default:
                for other in others:
                    other.is_default = False
            try:
                session.flush()
            except sa_exc.IntegrityError as exc:
                raise ConfigError(f"app {kind}:{name} version {version} was registered concurrently") from exc
            return _app_record(row)

    def list_apps(self, kind: str | None = None) -> list[AppRecord]:
        query = select(AppRegistration).order_by(
            AppRegistration.kind, AppRegistration.name, AppRegistration.registered_at, AppRegistration.id
        )
        if kind is not None:
            query = query.where(AppRegistration.kind == _check_kind(kind))
        with self._transaction() as session:
            return [_app_record(row) for row in session.scalars(query)]

    def get_app(self, name: str, kind: str | None = None, version: str | None = None) -> AppRecord:
        """The app's `version`, or its default version; ConfigError (with a suggestion) when there is none."""
        with self._transaction() as session:
            rows = _app_rows(session, name, kind)
            return _app_record(_pick_version(rows, version))

    def unregister_app(self, name: str, kind: str | None = None, version: str | None = None) -> list[AppRecord]:
        """Remove one version of an app, or all its versions when `version` is None; returns what was removed."""
        with self._transaction(write=True) as session:
            rows = _app_rows(session, name, kind)
            removed = rows if version is None else [_pick_version(rows, version)]
            records = [_app_record(row) for row in removed]
            for row in removed:
                session.delete(row)
            return records

    def set_default_version(self, name: str, version: str, kind: str | None = None) -> AppRecord:
        with self._transaction(write=True) as session:
            rows = _app_rows(session, name, kind)
            chosen = _pick_version(rows, version)
            for row in rows:
                row.is_default = row is chosen
            session.flush()
            return _app_record(chosen)

    # --- streams ------------------------------------------------------------------------------------

    def create_stream(
        self, name: str, definition: str, canonical: str, description: str | None = None
    ) -> StreamRecord:
        check_stream_name(name)
        with self._transaction(write=True) as session:
            if session.scalar(select(Stream.id).where(Stream.name == name)) is not None:
                raise ConfigError(f"stream '{name}' already exists: delete it first or choose another name")
            now = utcnow()
            row = Stream(name=name, definition=definition, canonical=canonical, description=description,
                         status=StreamStatus.UNDEPLOYED.value, created_at=now, updated_at=now)
            session.add(row)
            try:
                session.flush()
            except sa_exc.IntegrityError as exc:
                raise ConfigError(f"stream '{name}' already exists: delete it first or choose another name") from exc
            return _stream_record(row)

    def get_stream(self, name: str) -> StreamRecord:
        with self._transaction() as session:
            return _stream_record(_stream_row(session, name))

    def list_streams(self) -> list[StreamRecord]:
        with self._transaction() as session:
            return [_stream_record(row) for row in session.scalars(select(Stream).order_by(Stream.name))]

    def delete_stream(self, name: str) -> StreamRecord:
        """Delete a stream with all its releases; returns the stream as it was."""
        with self._transaction(write=True) as session:
            row = _stream_row(session, name)
            record = _stream_record(row)
            session.delete(row)
            return record

    def update_stream_definition(self, name: str, definition: str, canonical: str) -> StreamRecord:
        return self._update_stream(name, definition=definition, canonical=canonical)

    def set_stream_status(self, name: str, status: StreamStatus | str) -> StreamRecord:
        return self._update_stream(name, status=_check_status(status, StreamStatus, "stream").value)

    def save_deployment_properties(self, name: str, raw: str, parsed: dict[str, Any]) -> StreamRecord:
        """Keep the deployment properties exactly as the user gave them (`raw`) and as parsed, for redeploys."""
        if not isinstance(raw, str):
            raise ConfigError(f"the raw deployment properties must be text, got {type(raw).__name__}")
        return self._update_stream(
            name, deployment_properties_raw=raw, deployment_properties=_json_object(parsed, "deployment properties")
        )

    def _update_stream(self, name: str, **values: Any) -> StreamRecord:
        with self._transaction(write=True) as session:
            row = _stream_row(session, name)
            for key, value in values.items():
                setattr(row, key, value)
            session.flush()
            return _stream_record(row)

    # --- releases -----------------------------------------------------------------------------------

    def add_release(
        self, stream: str, manifest: dict[str, Any], status: ReleaseStatus | str = ReleaseStatus.DEPLOYED
    ) -> ReleaseRecord:
        """Record the stream's next release (1, 2, ...). A deployed release supersedes the previously deployed one."""
        checked = _check_status(status, ReleaseStatus, "release")
        manifest = _json_object(manifest, "release manifest")
        with self._transaction(write=True) as session:
            row = _stream_row(session, stream, lock=True)
            last = session.scalar(select(func.max(Release.number)).where(Release.stream_id == row.id))
            if checked is ReleaseStatus.DEPLOYED:
                deployed = select(Release).where(
                    Release.stream_id == row.id, Release.status == ReleaseStatus.DEPLOYED.value
                )
                for previous in session.scalars(deployed):
                    previous.status = ReleaseStatus.SUPERSEDED.value
            now = utcnow()
            release = Release(stream_id=row.id, number=(last or 0) + 1, manifest=manifest, status=checked.value,
                              created_at=now, updated_at=now)
            session.add(release)
            session.flush()
            return _release_record(release, stream)

    def releases(self, stream: str) -> list[ReleaseRecord]:
        with self._transaction() as session:
            row = _stream_row(session, stream)
            query = select(Release).where(Release.stream_id == row.id).order_by(Release.number)
            return [_release_record(release, stream) for release in session.scalars(query)]

    def release(self, stream: str, number: int) -> ReleaseRecord:
        with self._transaction() as session:
            return _release_record(_release_row(session, stream, number), stream)

    def set_release_status(self, stream: str, number: int, status: ReleaseStatus | str) -> ReleaseRecord:
        checked = _check_status(status, ReleaseStatus, "release")
        with self._transaction(write=True) as session:
            release = _release_row(session, stream, number)
            release.status = checked.value
            session.flush()
            return _release_record(release, stream)

    def latest_release(self, stream: str) -> ReleaseRecord | None:
        with self._transaction() as session:
            row = _stream_row(session, stream)
            query = select(Release).where(Release.stream_id == row.id).order_by(Release.number.desc()).limit(1)
            release = session.scalar(query)
            return None if release is None else _release_record(release, stream)

    @contextlib.contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Session]:
        bind = self._writer if write else self._engine
        with translate_errors(self._url), Session(bind, expire_on_commit=False) as session, session.begin():
            yield session


class StateTables:
    """Base of a repository over more tables of the platform state (migration runs, switches): one transaction per
    call, read-modify-write ones taking the write lock as they begin."""

    def __init__(self, state: StateStore) -> None:
        self._state = state
        self._writer = writer(state.engine)

    @contextlib.contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        bind = self._writer if write else self._state.engine
        with translate_errors(self._state.url), Session(bind, expire_on_commit=False) as session, session.begin():
            yield session


def writer(engine: Engine) -> Engine:
    """`engine` for read-modify-write transactions: on SQLite they take the write lock as they begin."""
    return engine.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE"})


@contextlib.contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Database failures as tuneflow errors naming the masked URL, never the password."""
    try:
        yield
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise ServiceUnavailableError(
            f"cannot use the state database at {mask_password(url)}: {error_reason(exc, url)}"
        ) from exc
    except sa_exc.DBAPIError as exc:
        raise TuneflowError(f"the state database at {mask_password(url)} failed: {error_reason(exc, url)}") from exc


# --- lookups ------------------------------------------------------------------------------------------


def _stream_row(session: Session, name: str, lock: bool = False) -> Stream:
    query = select(Stream).where(Stream.name == name)
    row = session.scalar(query.with_for_update() if lock else query)
    if row is None:
        known = session.scalars(select(Stream.name)).all()
        raise ConfigError(f"unknown stream '{name}'.{did_you_mean(name, known)}")
    return row


def _release_row(session: Session, stream: str, number: int) -> Release:
    row = _stream_row(session, stream)
    release = session.scalar(select(Release).where(Release.stream_id == row.id, Release.number == number))
    if release is None:
        numbers = session.scalars(select(Release.number).where(Release.stream_id == row.id).order_by(Release.number))
        listed = ", ".join(str(n) for n in numbers) or "none yet"
        raise ConfigError(f"stream '{stream}' has no release {number}; its releases: {listed}")
    return release


def _app_versions(session: Session, kind: str, name: str) -> list[AppRegistration]:
    query = select(AppRegistration).where(AppRegistration.kind == kind, AppRegistration.name == name)
    return list(session.scalars(query.order_by(AppRegistration.registered_at, AppRegistration.id)))


def _app_rows(session: Session, name: str, kind: str | None) -> list[AppRegistration]:
    """All versions of app `name` (of `kind`); ConfigError when there is none or `name` names several kinds."""
    query = select(AppRegistration).where(AppRegistration.name == name)
    if kind is not None:
        query = query.where(AppRegistration.kind == _check_kind(kind))
    rows = list(session.scalars(query.order_by(AppRegistration.registered_at, AppRegistration.id)))
    what = f"{kind} app" if kind else "app"
    if not rows:
        names = select(AppRegistration.name).distinct()
        if kind is not None:
            names = names.where(AppRegistration.kind == kind)
        raise ConfigError(f"unknown {what} '{name}'.{did_you_mean(name, session.scalars(names).all())}")
    kinds = sorted({row.kind for row in rows})
    if len(kinds) > 1:
        raise ConfigError(f"'{name}' names a {' and a '.join(kinds)} app: say which kind")
    return rows


def _pick_version(rows: Sequence[AppRegistration], version: str | None) -> AppRegistration:
    app = f"{rows[0].kind}:{rows[0].name}"
    versions = [row.version for row in rows]
    if version is None:
        default = next((row for row in rows if row.is_default), None)
        if default is None:
            raise ConfigError(
                f"app {app} has no default version: set one of {', '.join(versions)} as the default"
            )
        return default
    chosen = next((row for row in rows if row.version == version), None)
    if chosen is None:
        raise ConfigError(
            f"app {app} has no version '{version}'.{did_you_mean(version, versions)} "
            f"Registered versions: {', '.join(versions)}"
        )
    return chosen


# --- checks -------------------------------------------------------------------------------------------


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ConfigError(f"unknown app kind '{kind}'.{did_you_mean(kind, KINDS)} Kinds: {', '.join(KINDS)}")
    return kind


def _check_app_name(name: str) -> None:
    if not name or not set(name) <= NAME_CHARS or len(name) > 255:
        raise ConfigError(f"invalid app name {name!r}: use letters, digits, '-' and '_'")


def _check_uri(uri: str) -> str:
    match = URI_PATTERN.match(uri)
    if match is None:
        raise ConfigError(f"invalid app URI {uri!r}: expected python:module:attribute, e.g. python:sinks.log:LogSink")
    return match.group("module")


def _check_version(version: str) -> str:
    if not VERSION_PATTERN.match(version):
        raise ConfigError(
            f"invalid app version {version!r}: up to 64 letters, digits, '.', '_', '+' or '-', e.g. 1.2.0"
        )
    return version


def _distribution_version(uri: str, module: str) -> str:
    top_level = module.partition(".")[0]
    distributions = importlib.metadata.packages_distributions().get(top_level)
    if not distributions:
        raise ConfigError(
            f"no version given for {uri} and module '{module}' belongs to no installed distribution: give a version"
        )
    return importlib.metadata.version(distributions[0])


def _check_status(status: StrEnum | str, allowed: type[_Status], what: str) -> _Status:
    try:
        return allowed(status)
    except ValueError:
        names = [member.value for member in allowed]
        raise ConfigError(
            f"unknown {what} status '{status}'.{did_you_mean(str(status), names)} Statuses: {', '.join(names)}"
        ) from None


def _json_object(value: dict[str, Any], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ConfigError(f"the {what} must be a JSON object with text keys, got {type(value).__name__}")
    try:
        result: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the {what} cannot be stored as JSON: {exc}") from exc
    return result


# --- records ------------------------------------------------------------------------------------------


def _app_record(row: AppRegistration) -> AppRecord:
    return AppRecord(row.kind, row.name, row.uri, row.version, row.is_default, row.registered_at)


def _stream_record(row: Stream) -> StreamRecord:
    return StreamRecord(
        name=row.name,
        definition=row.definition,
        canonical=row.canonical,
        description=row.description,
        status=StreamStatus(row.status),
        deployment_properties_raw=row.deployment_properties_raw,
        deployment_properties=row.deployment_properties,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _release_record(row: Release, stream: str) -> ReleaseRecord:
    return ReleaseRecord(stream, row.number, row.manifest, ReleaseStatus(row.status), row.created_at, row.updated_at)

