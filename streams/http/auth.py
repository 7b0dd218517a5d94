"""Who may send: bearer tokens, and optional HMAC-SHA256 signatures that refuse stale or replayed requests.

Tokens come from a file (one a line, re-read when it changes, so they rotate without a restart) and from
TUNEFLOW_HTTP_TOKENS (comma-separated). Only SHA-256 digests of tokens and secrets are kept for comparison, and
every comparison is constant-time; nothing here logs or returns a token or a secret.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from streams.errors import ConfigError

TOKENS_ENV = "TUNEFLOW_HTTP_TOKENS"
TIMESTAMP_HEADER = "x-tuneflow-timestamp"
SIGNATURE_HEADER = "x-tuneflow-signature"
REPLAY_CAPACITY = 500_000

log = logging.getLogger("tuneflow.http.auth")


class SecretFile:
    """The non-blank lines of a file (`#` starts a comment line), re-read when its inode, size or mtime changes.

    A file that disappears or cannot be read later holds no secret until it is back: access fails closed.
    """

    def __init__(self, path: str | Path, what: str, check_every_s: float = 1.0) -> None:
        self.path = Path(path).expanduser()
        self.what = what
        self._check_every_s = check_every_s
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = None
        self._lines: tuple[bytes, ...] = ()
        self._checked = 0.0
        try:
            self._reload(os.stat(self.path))
        except OSError as exc:
            raise ConfigError(f"cannot read the {what} {self.path}: {exc.strerror}") from None

    def lines(self) -> tuple[bytes, ...]:
        now = time.monotonic()
        if now - self._checked >= self._check_every_s:
            with self._lock:
                if now - self._checked >= self._check_every_s:
                    self._checked = now
                    self._refresh()
        return self._lines

    def _refresh(self) -> None:
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            if self._stamp is not None:
                log.warning("the %s %s is gone (%s): every request is refused until it is back", self.what,
                            self.path, exc.strerror)
            self._stamp, self._lines = None, ()
            return
        if _stamp(stat) != self._stamp:
            try:
                self._reload(stat)
            except OSError as exc:
                log.warning("cannot read the %s %s (%s): every request is refused until it can be read",
                            self.what, self.path, exc.strerror)
                self._stamp, self._lines = None, ()

    def _reload(self, stat: os.stat_result) -> None:
        raw = self.path.read_bytes()
        lines = tuple(line.strip() for line in raw.splitlines())
        self._lines = tuple(line for line in lines if line and not line.startswith(b"#"))
        self._stamp = _stamp(stat)
        self._checked = time.monotonic()
        log.info("read the %s %s: %d entries", self.what, self.path, len(self._lines))


def _stamp(stat: os.stat_result) -> tuple[int, ...]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def _matches_any(presented: bytes, digests: list[bytes]) -> bool:
    """Constant-time in the token and in which entry matches: every entry is compared, digests of equal length."""
    wanted = _digest(presented)
    found = False
    for digest in digests:
        found |= hmac.compare_digest(wanted, digest)
    return found


class BearerTokens:
    def __init__(self, token_file: str | Path | None, env_tokens: str | None) -> None:
        self._file = SecretFile(token_file, "token file") if token_file else None
        self._env = [_digest(t.strip().encode()) for t in (env_tokens or "").split(",") if t.strip()]
        self._file_lines: tuple[bytes, ...] = ()
        self._file_digests: list[bytes] = []

    @classmethod
    def from_environment(cls, token_file: str | Path | None) -> BearerTokens:
        return cls(token_file, os.environ.get(TOKENS_ENV))

    @property
    def configured(self) -> bool:
        return bool(self._env or (self._file is not None and self._file.lines()))

    def accepts(self, presented: bytes) -> bool:
        return _matches_any(presented, self._digests())

    def _digests(self) -> list[bytes]:
        if self._file is None:
            return self._env
        lines = self._file.lines()
        if lines is not self._file_lines:
            self._file_lines, self._file_digests = lines, [_digest(line) for line in lines]
        return self._env + self._file_digests


def bearer_token(authorization: str | None) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token.encode("latin-1")


def signed_message(timestamp: str, method: str, target: str, body: bytes) -> bytes:
    """What a signature covers: `<timestamp>\\n<METHOD>\\n<path[?query]>\\n<body>`.

    Method and path are in it so that a body-less DELETE cannot be replayed against another track.
    """
    return f"{timestamp}\n{method.upper()}\n{target}\n".encode() + body


def sign(secret: bytes, timestamp: str, method: str, target: str, body: bytes) -> str:
    """The `X-Tuneflow-Signature` value a caller sends: `sha256=<hex>`."""
    return "sha256=" + hmac.new(secret, signed_message(timestamp, method, target, body), hashlib.sha256).hexdigest()


class Refusal(NamedTuple):
    status: int
    message: str


class Signatures:
    """HMAC-SHA256 checks: the timestamp within `window_s` of now, the signature by any current secret, and each
    signature accepted once (a replay inside the window is refused too)."""

    def __init__(self, secret_file: str | Path, window_s: int, clock: Callable[[], float] = time.time) -> None:
        self._secrets = SecretFile(secret_file, "HMAC secret file")
        if not self._secrets.lines():
            raise ConfigError(f"the HMAC secret file {self._secrets.path} holds no secret")
        self.window_s = window_s
        self._clock = clock
        self._seen: set[bytes] = set()
        self._expiries: list[tuple[float, bytes]] = []

    def refusal(self, timestamp: str | None, signature: str | None, method: str, target: str,
                body: bytes) -> Refusal | None:
        """None when the request is signed well, else the status (403, or 503 when replays cannot be checked)
        and why."""
        if not timestamp or not signature:
            return Refusal(403, f"the request must be signed: headers {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}")
        try:
            sent_at = int(timestamp)
        except ValueError:
            return Refusal(403, f"{TIMESTAMP_HEADER} must be whole seconds since the Unix epoch")
        now = self._clock()
        if abs(now - sent_at) > self.window_s:
            return Refusal(403, f"stale timestamp: more than {self.window_s}s from the server's clock")
        presented = signature.strip()
        presented = presented[7:] if presented.lower().startswith("sha256=") else presented
        try:
            mac = bytes.fromhex(presented)
        except ValueError:
            return Refusal(403, "bad signature")
        message = signed_message(timestamp, method, target, body)
        good = False
        for secret in self._secrets.lines():
            good |= hmac.compare_digest(hmac.new(secret, message, hashlib.sha256).digest(), mac)
        if not good:
            return Refusal(403, "bad signature")
        return self._first_use(mac, sent_at + self.window_s, now)

    def _first_use(self, mac: bytes, expires: float, now: float) -> Refusal | None:
        """Remember a signature until its timestamp goes stale; after that the window check refuses it."""
        while self._expiries and self._expiries[0][0] < now:
            self._seen.discard(heapq.heappop(self._expiries)[1])
        if mac in self._seen:
            return Refusal(403, "replayed request: this signature was already used; sign again with a new "
                                "timestamp")
        if len(self._seen) >= REPLAY_CAPACITY:
            return Refusal(503, "too many signed requests inside the window to check for replays")
        self._seen.add(mac)
        heapq.heappush(self._expiries, (expires, mac))
        return None
