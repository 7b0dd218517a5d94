"""An HTTP caller of the `http` source as a writer would be one: bearer token, HMAC signature, NDJSON batches; and a
raw-socket exchange for what well-behaved clients never send (oversized, slow or cut-off requests)."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from streams.http.auth import sign


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


class _Connection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        # As urllib3 and curl do: without it, the body's segment waits for the headers' delayed ACK (~40 ms).
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Caller:
    """One keep-alive connection; every request carries the token and, with a secret, a fresh signature."""

    def __init__(self, port: int, token: str | None, secret: bytes | None = None) -> None:
        self.port, self.token, self.secret = port, token, secret
        self._connection = _Connection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: bytes = b"", content_type: str | None = "application/json",
                token: str | None = "", secret: bytes | None = b"", signed_at: int | None = None) -> Answer:
        """`token`/`secret` default to the caller's; pass None to leave them out, or another value to lie."""
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        token = self.token if token == "" else token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        secret = self.secret if secret == b"" else secret
        if secret is not None:
            stamp = str(signed_at if signed_at is not None else int(time.time()))
            headers["X-Tuneflow-Timestamp"] = stamp
            headers["X-Tuneflow-Signature"] = sign(secret, stamp, method, path, body)
        self._connection.request(method, path, body=body, headers=headers)
        response = self._connection.getresponse()
        raw = response.read()
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
        if answer_headers.get("connection") == "close":
            self._connection.close()  # the next request opens a new connection
        parsed = orjson.loads(raw) if answer_headers.get("content-type", "").startswith("application/json") else raw
        return Answer(response.status, answer_headers, parsed)

    def close(self) -> None:
        self._connection.close()


def raw_exchange(port: int, head: bytes, body_chunks: Sequence[bytes] = (), pause_s: float = 0.0) -> bytes:
    """Send the head, then the body a chunk at a time (stopping once an answer has arrived), and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            time.sleep(pause_s)
            sock.setblocking(False)
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer
