"""The MongoDB document store (`mongodb://…`): version-guarded writes and tombstones, one bulk write a batch.

It also runs on FerretDB 1.24, so it uses plain filters and whole-document replacements only
(no `$expr`, no pipeline updates) and trusts no per-operation error of a failed update.
On FerretDB the version guard holds for one writer per key (the runtime routes each key to one sink
instance): FerretDB evaluates an update's filter and writes the document in two steps, so two concurrent
writers of the same key can both pass the guard. Within one batch each key is written once, so the commands
the store keeps in flight at once never race each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

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


@dataclass(frozen=True, slots=True)
class WriteShape:
    """How a server takes replacements and key reads best.

    MongoDB: everything of a batch in one command. FerretDB 1.x: it holds a backend connection for every matched
    update until the whole command ends (a command with as many as its pool of 50 hangs the server), and it
    scans the collection for an `$in`, so it gets one replacement or one key read per command, several in flight.
    """

    replacements_per_command: int
    commands_in_flight: int
    reads_by_key: bool


MONGODB_SHAPE = WriteShape(replacements_per_command=100_000, commands_in_flight=1, reads_by_key=False)
FERRETDB_SHAPE = WriteShape(replacements_per_command=1, commands_in_flight=8, reads_by_key=True)

T = TypeVar("T")
R = TypeVar("R")

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
        self._shape: WriteShape | None = None
        self._pool: ThreadPoolExecutor | None = None
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
                    stored = self._stored_versions(target, [change.key for change in pending])
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
        """Guarded replacements in commands of the server's shape: (replacements confirmed, inserts, to redo)."""
        size = self.shape().replacements_per_command
        commands = [changes[start : start + size] for start in range(0, len(changes), size)]
        matched = self._each(commands, lambda chunk: _bulk(target, chunk, [
            ReplaceOne({"_id": change.key, VERSION_FIELD: {"$lt": change.version}}, _stored(change))
            for change in chunk
        ])[0])
        confirmed = sum(matched)
        unsure = [change for chunk, count in zip(commands, matched, strict=True) if count < len(chunk)
                  for change in chunk]
        if not unsure:
            return confirmed, 0, []
        # Whatever did not match is stale, absent, or was just rewritten by another writer: look.
        stored = self._stored_versions(target, [change.key for change in unsure])
        missing = [change for change in unsure if change.key not in stored]
        redo = [change for change in unsure if change.key in stored and stored[change.key] < change.version]
        inserted, raced = _bulk(target, missing, [InsertOne(_stored(change)) for change in missing])
        return confirmed, inserted, redo + raced

    def get_many(self, collection: str, keys: Sequence[Any]) -> dict[Any, Document]:
        target = self._collection(collection)
        wanted = list(dict.fromkeys(keys))
        with self._translated(f"read {collection}"):
            return {document["_id"]: document for document in self._find_keys(target, wanted, VISIBLE, None)}

    def count(self, collection: str) -> int:
        target = self._collection(collection)
        with self._translated(f"count {collection}"):
            return target.count_documents(VISIBLE)

    def scan(self, collection: str, batch_size: int = 1000) -> Iterator[list[Document]]:
        return self._scan(collection, VISIBLE, batch_size)

    def scan_range(self, collection: str, after: Any, upto: Any, batch_size: int = 1000) -> Iterator[list[Document]]:
        bounds: Document = {}
        if after is not None:
            bounds["$gt"] = after
        if upto is not None:
            bounds["$lte"] = upto
        return self._scan(collection, {**VISIBLE, "_id": bounds} if bounds else VISIBLE, batch_size)

    def scan_since(self, collection: str, version: int, batch_size: int = 1000) -> Iterator[list[Document]]:
        return self._scan(collection, {**VISIBLE, VERSION_FIELD: {"$gt": version}}, batch_size)

    def scan_unordered(self, collection: str, batch_size: int = 1000) -> Iterator[list[Document]]:
        return self._scan(collection, VISIBLE, batch_size, ordered=False)

    def scan_keys(self, collection: str, batch_size: int = 1000) -> Iterator[list[Any]]:
        for batch in self._scan(collection, VISIBLE, batch_size, ordered=False, projection={"_id": 1}):
            yield [document["_id"] for document in batch]

    def streams_by_key(self) -> bool:
        return not self.shape().reads_by_key

    def _scan(self, collection: str, where: Document, batch_size: int, ordered: bool = True,
              projection: Document | None = None) -> Iterator[list[Document]]:
        target = self._collection(collection)
        batch: list[Document] = []
        with self._translated(f"scan {collection}"), target.find(
            where, projection, sort=[("_id", ASCENDING)] if ordered else None, batch_size=batch_size
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
        if self._pool is not None:
            self._pool.shutdown()
        if self._owns_client:
            self._client.close()

    def shape(self) -> WriteShape:
        """The server's write shape, asked once (FerretDB says who it is in `buildInfo`)."""
        if self._shape is None:
            is_ferretdb = "ferretdbVersion" in self._client.admin.command("buildInfo")
            self._shape = FERRETDB_SHAPE if is_ferretdb else MONGODB_SHAPE
        return self._shape

    def _each(self, items: Sequence[T], call: Callable[[T], R]) -> list[R]:
        """`call` over `items` in order, as many at once as the server's shape takes."""
        in_flight = self.shape().commands_in_flight
        if in_flight == 1 or len(items) < 2:
            return [call(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="tf-mongo")
        return list(self._pool.map(call, items))

    def _find_keys(self, target: Collection[Document], keys: list[Any], where: Document,
                   projection: Document | None) -> list[Document]:
        """The documents of `keys` matching `where`: one `$in` per READ_CHUNK keys, or one key per command."""
        if self.shape().reads_by_key:
            found = self._each(keys, lambda key: target.find_one({"_id": key, **where}, projection))
            return [document for document in found if document is not None]
        return [document for start in range(0, len(keys), READ_CHUNK)
                for document in target.find({"_id": {"$in": keys[start : start + READ_CHUNK]}, **where}, projection)]

    def _stored_versions(self, target: Collection[Document], keys: list[Any]) -> dict[Any, int | float]:
        versions: dict[Any, int | float] = {}
        unversioned: list[Any] = []
        for document in self._find_keys(target, keys, {}, {VERSION_FIELD: 1}):
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
