"""uvicorn on its own thread and event loop, on a socket bound before it starts, with the connection handling it lacks.

uvicorn bounds idle keep-alive connections but neither how long request headers may take to arrive nor how large
they may grow on its httptools parser; `_GuardedProtocol` adds both (408 and 431, then the connection closes). It also
closes gracefully: an answer given before the body was read (413, 401, ...) ends with a half-close, and what the
client still sends is discarded for a moment, because closing a socket with unread bytes makes the kernel send a
reset that can destroy the answer before the client reads it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import orjson
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from streams.errors import ConfigError

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 64 << 10
LINGER_S = 2.0
LINGER_BYTES = 16 << 20

log = logging.getLogger("tuneflow.http")


class _Lingering:
    """The transport uvicorn is given: `close` lingers (see the module docstring); the rest is the real one's."""

    def __init__(self, transport: asyncio.Transport, protocol: _GuardedProtocol) -> None:
        self.real = transport
        self._protocol = protocol
        self._closing = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def is_closing(self) -> bool:
        return self._closing or self.real.is_closing()

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._protocol.linger()


class _GuardedProtocol(HttpToolsProtocol):
    header_timeout_s = 10.0
    max_header_bytes = MAX_HEADER_BYTES

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._in_headers = True
        self._lingering = False
        self._gone = False
        self._real = transport
        super().connection_made(_Lingering(transport, self))  # type: ignore[arg-type]
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone = True
        self._disarm_header_timer()
        super().connection_lost(exc)

    def linger(self) -> None:
        """Half-close once the answer is written, discard what still comes, close on the client's FIN or soon."""
        self._disarm_header_timer()
        real = self._real
        if self._gone or real.is_closing() or not real.can_write_eof():
            real.close()
            return
        try:
            real.write_eof()
        except OSError:  # the client is already gone (ENOTCONN): nothing to linger for
            real.close()
            return
        self._lingering = True
        self._linger_bytes = 0
        real.resume_reading()
        self.loop.call_later(LINGER_S, real.close)

    def eof_received(self) -> None:
        if self._lingering:
            self._real.close()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._linger_bytes += len(data)
            if self._linger_bytes > LINGER_BYTES:
                self._real.close()
            return
        super().data_received(data)
        if self._in_headers and not self.transport.is_closing():
            # The whole chunk was parsed and the headers are still incomplete: all of it is header bytes.
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes:
                self._refuse(431, "Request Header Fields Too Large",
                             f"request headers over {self.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm_header_timer()
        super().on_headers_complete()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm_header_timer(self) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()  # type: ignore[union-attr]
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._in_headers and not self.transport.is_closing():
            self._refuse(408, "Request Timeout", f"request headers not received within {self.header_timeout_s:g}s")

    def _refuse(self, status: int, phrase: str, message: str) -> None:
        self._disarm_header_timer()
        body = orjson.dumps({"error": "timeout" if status == 408 else "too-large", "message": message})
        self.transport.write(f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
                             f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
        self.transport.close()


def _protocol(header_timeout_s: float) -> type[HttpToolsProtocol]:
    return type("GuardedHttpProtocol", (_GuardedProtocol,), {"header_timeout_s": header_timeout_s})


class HttpServer:
    def __init__(self, app: ASGIApp, host: str, port: int, header_timeout_s: float = 10.0,
                 keep_alive_s: int = 5, name: str = "tuneflow-http-source") -> None:
        self._socket = _bind(host, port)
        config = uvicorn.Config(app, http=_protocol(header_timeout_s), lifespan="off", access_log=False,
                                log_config=None, timeout_keep_alive=keep_alive_s, timeout_graceful_shutdown=5,
                                server_header=False, proxy_headers=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def host(self) -> str:
        return str(self._socket.getsockname()[0])

    def start(self) -> HttpServer:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise ConfigError(f"the HTTP server did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise ConfigError(f"the HTTP server did not start within {START_TIMEOUT_S:g}s")
            time.sleep(0.01)
        return self

    @property
    def serving(self) -> bool:
        return self._thread.is_alive() and self._server.started and not self._server.should_exit

    def _serve(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # surfaced by start(); the thread must not die silently
            self._error = exc
            log.exception("the HTTP server stopped")

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT_S)
        self._socket.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named: asyncio sets TCP_NODELAY only on TCP sockets that say so, and without it every keep-alive
    # answer waits ~40 ms for the client's delayed ACK between its header and body segments.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"the http source cannot listen on {host}:{port}: {exc.strerror}; pick another "
                          "--port (0 picks a free one)") from None
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock
