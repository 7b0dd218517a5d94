"""The MongoDB document store (`mongodb://…`): version-guarded writes and tombstones, one bulk write a batch.

It also runs on FerretDB 1.24, so it uses plain filters and whole-document replacements only
(no `$expr`, no pipeline updates) and trusts no per-operation error of a failed update.
On FerretDB the version guard holds for one writer per key (the runtime routes each key to one sink
instance): FerretDB evaluates an update's filter and writes the document in two steps, so two concurrent
writers of the same key can both pass the guard.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from pymongo import ASCENDING, InsertOne, MongoClient, ReplaceOne
from pymongo.collection import Collection
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
)

from streams.errors import ConfigError, RecordError, ServiceUnavailableError, TransientError, TuneflowError
from streams.stores.base import (
    DELETED_FIELD,
    VERSION_FIELD,
    ApplyResult,
    Change,
    checked_name,
    newest_per_key,
)

Document = dict[str, Any]

VISIBLE: Document = {DELETED_FIELD: {"$ne": True}}
DEFAULT_OPTIONS = {"serverSelectionTimeoutMS": 5_000, "connectTimeoutMS": 5_000, "socketTimeoutMS": 60_000}
READ_CHUNK = 1000
WRITE_ROUNDS = 3
FERRETDB_REPLACE_CHUNK = 10
MONGODB_WRITE_BATCH = 100_000

_DUPLICATE_KEY = frozenset({11000, 11001})
_AUTH_FAILED, _UNAUTHORIZED = 18, 13
# Failover, shutdown, timeouts and network trouble reported by the server: gone once it recovers.
_TRANSIENT_CODES = frozenset({6, 7, 50, 64, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})
_TRANSIENT_LABELS = ("RetryableWriteError", "TransientTransactionError")


class MongoStore:
    """A DocumentStore on one database: documents and tombstones keyed by `_id`, `_version` on each."""

    def __init__(self, uri: str, database: str, client: MongoClient[Document] | None = None) -> None:
        self.where = masked_uri(uri)
        name = checked_name("database", database)
        self._owns_client = client is None
        self._client = client if client is not None else _connect(uri, self.where)
        self._db = self._client[name]
        self._chunk: int | None = None
        self._expect_updates = False  # whether most of the last batch replaced stored documents

    def apply(self, collection: str, changes: Sequence[Change]) -> ApplyResult:
        """Insert what is new and replace older versions of what is stored, never relying on per-op errors.

        New keys go through one unordered insert, which costs them no read. For keys the insert found
        stored, one read of their versions keeps stale changes (replays) off the wire, and only newer ones get
        version-guarded replacements. When most of the previous batch replaced stored documents (an update
        stream), the batch goes straight to the replacements, skipping an insert and a read that would only
        confirm it. A replacement command that confirms fewer than it sent is the only one whose keys are
        read back, to tell stale changes from vanished keys and another writer's race.
        """
        target = self._collection(collection)
        newest = newest_per_key(changes)
        with self._translated(f"write to {collection}"):
            applied = replaced = 0
            pending = newest
            if not self._expect_updates:
                applied, pending = _bulk(target, newest, [InsertOne(_stored(change)) for change in newest])
                if pending:
                    stored = _stored_versions(target, [change.key for change in pending])
                    pending = [c for c in pending if c.key not in stored or stored[c.key] < c.version]
            for _ in range(WRITE_ROUNDS):
                if not pending:
                    self._expect_updates = replaced * 2 > len(newest)
                    return ApplyResult(applied=applied, stale=len(changes) - applied)
                matched, inserted, pending = self._replace(target, pending)
                applied += matched + inserted
                replaced += matched
        raise TransientError(f"{len(pending)} documents in {collection} kept racing a concurrent writer; "
                             "the batch will be written again")

    def _replace(self, target: Collection[Document], changes: list[Change]) -> tuple[int, int, list[Change]]:
        """Guarded replacements, a few per command: (replacements confirmed, inserts, changes to redo)."""
        confirmed = inserted = 0
        redo: list[Change] = []
        size = self._replace_chunk()
        for start in range(0, len(changes), size):
            chunk = changes[start : start + size]
            matched = _bulk(target, chunk, [
                ReplaceOne({"_id": change.key, VERSION_FIELD: {"$lt": change.version}}, _stored(change))
                for change in chunk
            ])[0]
            confirmed += matched
            if matched == len(chunk):
                continue
            # Whatever did not match is stale, absent, or was just rewritten by another writer: look.
            stored = _stored_versions(target, [change.key for change in chunk])
            missing = [change for change in chunk if change.key not in stored]
            redo += [change for change in chunk if change.key in stored and stored[change.key] < change.version]
            added, raced = _bulk(target, missing, [InsertOne(_stored(change)) for change in missing])
            inserted += added
            redo += raced
        return confirmed, inserted, redo

    def get_many(self, collection: str, keys: Sequence[Any]) -> dict[Any, Document]:
        target = self._collection(collection)
        wanted = list(dict.fromkeys(keys))
        found: dict[Any, Document] = {}
        with self._translated(f"read {collection}"):
            for start in range(0, len(wanted), READ_CHUNK):
                for document in target.find({"_id": {"$in": wanted[start : start + READ_CHUNK]}, **VISIBLE}):
                    found[document["_id"]] = document
        return found

    def count(self, collection: str) -> int:
        target = self._collection(collection)
        with self._translated(f"count {collection}"):
            return target.count_documents(VISIBLE)

    def scan(self, collection: str, batch_size: int = 1000) -> Iterator[list[Document]]:
        target = self._collection(collection)
        batch: list[Document] = []
        with self._translated(f"scan {collection}"), target.find(
            VISIBLE, sort=[("_id", ASCENDING)], batch_size=batch_size
        ) as cursor:
            for document in cursor:
                batch.append(document)
                if len(batch) == batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def ensure_indexes(self, collection: str, fields: Sequence[str] = ()) -> None:
        """Ascending indexes for the fields readers look documents up by (the key needs none: it is `_id`)."""
        target = self._collection(collection)
        with self._translated(f"index {collection}"):
            indexed = {next(iter(spec["key"])) for spec in target.list_indexes() if len(spec["key"]) == 1}
            # One at a time, and only the missing ones: FerretDB 1.24 drops the connection when one
            # createIndexes command repeats several existing indexes.
            for field in dict.fromkeys(fields):
                if field not in indexed:
                    target.create_index([(field, ASCENDING)])

    def drop(self, collection: str) -> None:
        name = checked_name("collection", collection)
        with self._translated(f"drop {collection}"):
            self._db.drop_collection(name)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def _replace_chunk(self) -> int:
        """How many replacements one command may carry.

        FerretDB 1.x holds a backend connection for every matched update until the whole command ends, so a
        command with more matches than its pool (100 on SQLite, 50 on PostgreSQL) hangs the server.
        """
        if self._chunk is None:
            is_ferretdb = "ferretdbVersion" in self._client.admin.command("buildInfo")
            self._chunk = FERRETDB_REPLACE_CHUNK if is_ferretdb else MONGODB_WRITE_BATCH
        return self._chunk

    def _collection(self, name: str) -> Collection[Document]:
        return self._db[checked_name("collection", name)]

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        try:
            yield
        except PyMongoError as exc:
            raise _tuneflow_error(exc, action, self.where) from exc


def _stored(change: Change) -> Document:
    if change.document is None:
        return {"_id": change.key, VERSION_FIELD: change.version, DELETED_FIELD: True}
    return {**change.document, "_id": change.key, VERSION_FIELD: change.version, DELETED_FIELD: False}


def _stored_versions(target: Collection[Document], keys: list[Any]) -> dict[Any, int | float]:
    versions: dict[Any, int | float] = {}
    unversioned: list[Any] = []
    for start in range(0, len(keys), READ_CHUNK):
        for document in target.find({"_id": {"$in": keys[start : start + READ_CHUNK]}}, {VERSION_FIELD: 1}):
            version = document.get(VERSION_FIELD)
            if isinstance(version, int | float) and not isinstance(version, bool):
                versions[document["_id"]] = version
            else:
                unversioned.append(document["_id"])
    if unversioned:
        raise RecordError(
            f"{len(unversioned)} documents in {target.name} have no numeric {VERSION_FIELD} (first: key "
            f"{unversioned[0]!r}): not written by tuneflow, so a guarded write cannot replace them",
            [{"field": VERSION_FIELD, "message": f"stored {key!r} has no version"} for key in unversioned],
        )
    return versions


def _bulk(target: Collection[Document], changes: list[Change],
          requests: Sequence[InsertOne[Document] | ReplaceOne[Document]]) -> tuple[int, list[Change]]:
    """One unordered bulk write: how many the server confirmed, and the changes whose key already existed."""
    if not requests:
        return 0, []
    try:
        result = target.bulk_write(requests, ordered=False)
    except BulkWriteError as exc:
        details = exc.details
        errors = details.get("writeErrors", [])
        if details.get("writeConcernErrors") or any(e.get("code") in _TRANSIENT_CODES for e in errors):
            raise TransientError(f"{target.name}: the server did not confirm the write "
                                 f"({_first_message(details)}); the batch will be written again") from exc
        failed = [(changes[e["index"]].key, e.get("errmsg"))
                  for e in errors if e.get("code") not in _DUPLICATE_KEY]
        if failed:
            raise RecordError(
                f"{len(failed)} of {len(changes)} documents refused by {target.name} "
                f"(first: key {failed[0][0]!r}: {failed[0][1]})",
                [{"field": "", "message": f"key {key!r}: {message}"} for key, message in failed],
            ) from exc
        confirmed = int(details.get("nInserted", 0)) + int(details.get("nMatched", 0))
        return confirmed, [changes[e["index"]] for e in errors]
    except KeyError as exc:
        # FerretDB 1.24 answers a failed update without the counts pymongo merges, and without the reason.
        raise RecordError(f"{target.name} refused a replacement in this batch without saying which "
                          f"(reply lacks {exc})") from exc
    return result.inserted_count + result.matched_count, []


def _first_message(details: Mapping[str, Any]) -> str:
    for kind in ("writeConcernErrors", "writeErrors"):
        if details.get(kind):
            return str(details[kind][0].get("errmsg", "unknown error"))
    return "unknown error"


def _connect(uri: str, where: str) -> MongoClient[Document]:
    given = uri.lower()
    defaults: dict[str, Any] = {
        option: value for option, value in DEFAULT_OPTIONS.items() if option.lower() not in given
    }
    try:
        return MongoClient(uri, connect=False, appname="tuneflow", **defaults)
    except (ConfigurationError, ValueError, TypeError) as exc:
        # pymongo may quote pieces of a mistyped URI, password included: say what to check instead.
        reason = "check that the user name and password are percent-escaped (urllib.parse.quote_plus)" \
            if "@" in uri else str(exc)
        raise ConfigError(f"invalid MongoDB URI {where}: {reason}") from None


def _tuneflow_error(exc: PyMongoError, action: str, where: str) -> TuneflowError:
    if isinstance(exc, ConnectionFailure):
        return TransientError(f"MongoDB at {where} is unreachable ({action}): {_short(exc)}. Is the server "
                              "running? Set TUNEFLOW_MONGO_URI or the app's --uri to where it listens")
    if isinstance(exc, OperationFailure):
        if exc.code == _AUTH_FAILED:
            return ConfigError(f"MongoDB at {where} refused the credentials ({action}): check the user name, "
                               "password and authSource in the URI")
        if exc.code == _UNAUTHORIZED:
            return ConfigError(f"the MongoDB user in {where} is not allowed to {action}: grant it readWrite "
                               "on the database, or use another user")
        if exc.code in _TRANSIENT_CODES or any(exc.has_error_label(label) for label in _TRANSIENT_LABELS):
            return TransientError(f"MongoDB at {where} could not {action} for now: {_short(exc)}")
    if isinstance(exc, ConfigurationError):
        return ConfigError(f"MongoDB URI {where} is unusable: {_short(exc)}")
    return ServiceUnavailableError(f"MongoDB at {where} failed to {action}: {_short(exc)}")


def _short(exc: PyMongoError) -> str:
    """pymongo's first sentence, without the topology dump that follows a server-selection timeout."""
    text = str(exc).split(", Timeout:", 1)[0].split(", full error:", 1)[0]
    return text if len(text) <= 300 else text[:297] + "..."


def masked_uri(uri: str) -> str:
    """The URI's scheme, user and hosts for messages: never its password, never its options."""
    scheme, separator, rest = uri.partition("://")
    if not separator:
        return "<not a URI>"
    userinfo, at, hosts = rest.rpartition("@")
    hosts = hosts.split("?", 1)[0].rstrip("/")
    user = f"{userinfo.split(':', 1)[0]}:***@" if at else ""
    return f"{scheme}://{user}{hosts}"
