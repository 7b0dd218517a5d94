"""A store's writes in a process of its own.

A sink that writes two stores (dual-write) does all of both clients' Python work (statements, documents, replies)
under one interpreter lock: the second store's client then takes its turns out of the first one's, and the first
store writes slower than it would alone. A `StoreProcess` runs one store in a child process (`spawn`: no threads
are inherited) and forwards `apply` (and the relational store's `misfits`) over a pipe; the parent only pickles the
changes. Errors come back as the same tuneflow errors; a child that died is a transient error, and the next call
starts a new one.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from streams import errors
from streams.errors import TransientError, TuneflowError
from streams.stores.base import ApplyResult, Change, DocumentStore

START_TIMEOUT_S = 120.0

Reasons = list[dict[str, str]]


def _portable(exc: BaseException) -> tuple[str, str, Reasons]:
    """An exception as plain values: its class name, message and (for a record error) reasons."""
    return type(exc).__name__, str(exc), list(getattr(exc, "reasons", None) or [])


def _rebuilt(kind: str, message: str, reasons: Reasons, where: str) -> Exception:
    """The tuneflow error the store raised, as itself; anything else as a RuntimeError naming its type."""
    known = getattr(errors, kind, None)
    if isinstance(known, type) and issubclass(known, TuneflowError):
        if issubclass(known, errors.RecordError):
            return known(message, reasons)
        return known(message)
    return RuntimeError(f"{where}: {kind}: {message}")


def _serve(opener: Callable[[], DocumentStore], conn: Connection) -> None:
    """The child: open the store, then answer calls until the parent closes the pipe or says `close`."""
    try:
        store = opener()
    except BaseException as exc:  # reported to the parent, which raises it
        conn.send(("error", _portable(exc)))
        return
    conn.send(("ready", hasattr(store, "misfits")))
    try:
        while True:
            try:
                method, args = conn.recv()
            except (EOFError, OSError):
                return
            if method == "close":
                return
            try:
                conn.send(("ok", getattr(store, method)(*args)))
            except BaseException as exc:  # every failure goes back to the caller
                conn.send(("error", _portable(exc)))
    finally:
        store.close()


class StoreProcess:
    """`apply` and `misfits` of the store `opener` opens, run in a child process; one call at a time."""

    def __init__(self, opener: Callable[[], DocumentStore], where: str) -> None:
        self.where = where
        self._opener = opener
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._checks_misfits = False
        with self._lock:
            self._start()

    def apply(self, collection: str, changes: Sequence[Change]) -> ApplyResult:
        result: ApplyResult = self._call("apply", collection, list(changes))
        return result

    def misfits(self, collection: str, changes: Sequence[Change]) -> dict[Any, Reasons]:
        """The store's own check when it has one (the relational store); a document store holds any document."""
        if not self._checks_misfits:
            return {}
        found: dict[Any, Reasons] = self._call("misfits", collection, list(changes))
        return found

    def close(self) -> None:
        with self._lock:
            self._stop(ask=True)

    def _call(self, method: str, *args: Any) -> Any:
        with self._lock:
            if self._conn is None:
                self._start()
            assert self._conn is not None
            try:
                self._conn.send((method, args))
                kind, value = self._conn.recv()
            except (EOFError, OSError) as exc:
                self._stop(ask=False)
                raise TransientError(f"{self.where}: the store's process ended ({type(exc).__name__}); "
                                     "the batch will be written again") from exc
        if kind == "error":
            raise _rebuilt(*value, where=self.where)
        return value

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=_serve, args=(self._opener, child), daemon=True,
                                  name=f"tuneflow-store {self.where}")
        process.start()
        child.close()
        if not parent.poll(START_TIMEOUT_S):
            process.kill()
            parent.close()
            raise TransientError(f"{self.where}: the store's process did not start in {START_TIMEOUT_S:.0f}s")
        try:
            kind, value = parent.recv()
        except EOFError as exc:
            process.join(5)
            parent.close()
            raise TransientError(f"{self.where}: the store's process exited at start "
                                 f"(exit code {process.exitcode})") from exc
        if kind == "error":
            process.join(5)
            parent.close()
            raise _rebuilt(*value, where=self.where)
        self._conn, self._process, self._checks_misfits = parent, process, bool(value)

    def _stop(self, ask: bool) -> None:
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if conn is not None:
            if ask:
                with contextlib.suppress(OSError):
                    conn.send(("close", ()))
            conn.close()
        if process is not None:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)
