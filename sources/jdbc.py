"""`jdbc` source: a snapshot of the legacy catalog's tracks, read in key order and emitted as track records.

Each record is one track assembled from the legacy tables (track, album, artists, genres), keyed by its id, in the
shape `normalize` validates; rows that break the catalog rules are dropped by `normalize` into its DLQ with the
reasons. The snapshot ends when every track has been read (`exhausted`); one instance reads the whole table.
"""

from __future__ import annotations

import time

import orjson
from pydantic import Field
from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.exc import DBAPIError, OperationalError

from sources.base import AppOptions, SourceApp
from streams.catalog.assemble import next_track_ids, track_payloads
from streams.catalog.dburl import credentials_refused, error_reason, make_engine, mask_password
from streams.errors import ConfigError, TransientError
from streams.records import Record


class JdbcOptions(AppOptions):
    url: str = Field(min_length=1, description="The legacy catalog database: postgresql://, mariadb:// or sqlite:///.")
    after: int = Field(default=0, ge=0, description="Start after this track id (resume a snapshot).")


class JdbcSource(SourceApp[JdbcOptions]):
    name = "jdbc"
    options_model = JdbcOptions
    _exhausted = False  # read by the embedded deployer from another thread, maybe before setup() ran

    def setup(self) -> None:
        self._masked = mask_password(self.options.url)
        self._engine: Engine = make_engine(self.options.url)
        self._last = self.options.after
        try:
            with self._engine.connect() as conn:
                if not inspect(conn).has_table("track"):
                    raise ConfigError(f"{self._masked} holds no legacy catalog (no table 'track'); "
                                      "make one with `tuneflow catalog generate`")
        except DBAPIError as exc:
            reason = error_reason(exc, self.options.url)
            if credentials_refused(exc):
                raise ConfigError(f"the legacy catalog at {self._masked} refused the credentials: {reason}") from None
            if isinstance(exc, OperationalError):
                raise TransientError(f"cannot reach the legacy catalog at {self._masked}: {reason}") from None
            raise ConfigError(f"cannot read the legacy catalog at {self._masked}: {reason}") from None

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._exhausted:
            time.sleep(timeout_s)
            return []
        try:
            with self._engine.connect() as conn:
                payloads = self._next(conn, max_records)
        except OperationalError as exc:
            raise TransientError(f"legacy catalog at {self._masked}: {error_reason(exc, self.options.url)}") from None
        if not payloads:
            self._exhausted = True
            self.context.log.info("snapshot complete: every track after id %d read", self.options.after)
            return []
        self._last = payloads[-1]["_id"]
        return [Record(key=str(p["_id"]).encode(), value=orjson.dumps(p)) for p in payloads]

    def _next(self, conn: Connection, max_records: int) -> list[dict[str, object]]:
        ids = next_track_ids(conn, self._last, max_records)
        return track_payloads(conn, ids) if ids else []

    def close(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.dispose()

