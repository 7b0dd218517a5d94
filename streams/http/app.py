"""The ASGI app of the `http` source: routes, the order of checks, and the answers.

Checks run cheapest first and before the body is read where they can: route (404/405), bearer token (401),
content type (415), declared length (413), readiness and the byte budget (503); then the body is read within its
limits (413/408), its signature checked (403), and each record validated by `check_change` (400/422). A 202 goes out
only once Kafka acknowledged every accepted record. Any answer given before the body was read closes the connection,
so an unread body is never drained.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streams.catalog.changes import Rejection, check_change
from streams.errors import TuneflowError
from streams.http.auth import SIGNATURE_HEADER, TIMESTAMP_HEADER, BearerTokens, Signatures, bearer_token
from streams.http.intake import Delivery, Intake, Ticket
from streams.http.limits import (
    JSON_TYPES,
    NDJSON_TYPES,
    ByteBudget,
    Limits,
    Refused,
    Reservation,
    busy,
    declared_length,
    media_type,
    ndjson_lines,
    read_body,
)
from streams.http.metrics import UNMATCHED, HttpMetrics
from streams.http.openapi import openapi_document
from streams.records import Record

if TYPE_CHECKING:
    from streams.migration.reads import SwitchedReads

REALM = 'Bearer realm="tuneflow"'
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_AT_LINE_ONE = " at line 1 column "
NOT_READY = "not accepting records now: Kafka is unreachable, or the source is starting or stopping"
_UNVERSIONED = {"field": "updated_at", "message": "a versioned delete needs ?updated_at=<ISO-8601 timestamp>"}

log = logging.getLogger("tuneflow.http")


@dataclass
class Ingest:
    """What the routes need: where records go, who may send, the limits, and how to count."""

    intake: Intake
    limits: Limits
    tokens: BearerTokens | None  # None: --insecure-no-auth
    signatures: Signatures | None
    metrics: HttpMetrics
    registry: CollectorRegistry
    ready: Callable[[], bool]
    count_failed: Callable[[str, int], None] = lambda reason, count: None
    reads: SwitchedReads | None = None  # GET /tracks/{id} from the store the migration's switch reads


def build_app(ingest: Ingest) -> ASGIApp:
    budget = ByteBudget(ingest.limits.max_buffered)
    openapi = orjson.dumps(openapi_document(ingest.limits, signed=ingest.signatures is not None,
                                            reads=ingest.reads is not None))
    handlers = _Handlers(ingest, budget)
    track_routes = [Route("/tracks/{id}", handlers.delete_track, methods=["DELETE"])]
    if ingest.reads is not None:
        track_routes.insert(0, Route("/tracks/{id}", handlers.get_track, methods=["GET"]))
    routes = [
        Route("/tracks", handlers.post_track, methods=["POST"]),
        Route("/tracks/batch", handlers.post_batch, methods=["POST"]),
        *track_routes,
        Route("/healthz", lambda _: Response(b"ok\n", media_type="text/plain"), methods=["GET"]),
        Route("/readyz", handlers.readyz, methods=["GET"]),
        Route("/metrics", lambda _: Response(generate_latest(ingest.registry), media_type=CONTENT_TYPE_LATEST),
              methods=["GET"]),
        Route("/openapi.json", lambda _: Response(openapi, media_type="application/json"), methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_exception, Exception: _internal})
    return _Measured(app, ingest.metrics)


class _Handlers:
    def __init__(self, ingest: Ingest, budget: ByteBudget) -> None:
        self.ingest = ingest
        self.limits = ingest.limits
        self.budget = budget

    async def readyz(self, _: Request) -> Response:
        ok = self.ingest.ready()
        return Response(b"ready\n" if ok else b"not ready\n", 200 if ok else 503, media_type="text/plain")

    async def post_track(self, request: Request) -> Response:
        return await self._admitted(request, JSON_TYPES, self._single)

    async def post_batch(self, request: Request) -> Response:
        async def handle(body: bytes, reservation: Reservation) -> Response:
            lines = ndjson_lines(body, self.limits)
            if not lines:
                raise Refused(400, "bad-request", "the body holds no line")
            records: list[Record] = []
            rejected: list[dict[str, Any]] = []
            for number, line in lines:
                checked = check_change(line)
                if isinstance(checked, Rejection):
                    rejected.append({"line": number, "reasons": _line_reasons(checked)})
                    self._count_rejected(checked.kind)
                else:
                    key, value = checked
                    records.append(Record(key, value))
            if records:
                await self._deliver(records, reservation)
            return _json(202 if records else 422, {"accepted": len(records), "rejected": rejected})

        return await self._admitted(request, NDJSON_TYPES, handle)

    async def delete_track(self, request: Request) -> Response:
        async def handle(body: bytes, reservation: Reservation) -> Response:
            updated_at = request.query_params.get("updated_at")
            if not updated_at:
                return self._rejected(Rejection([_UNVERSIONED]))
            payload = orjson.dumps({"op": "delete", "track_id": _path_id(request.path_params["id"]),
                                    "updated_at": updated_at})
            return await self._single(payload, reservation)

        return await self._admitted(request, None, handle)

    async def get_track(self, request: Request) -> Response:
        reads = self.ingest.reads
        assert reads is not None, "the GET route exists only with reads"
        try:
            self._authenticate(request)
        except Refused as refused:
            return _json(refused.status, {"error": refused.error, "message": refused.message}, refused.headers)
        key = _path_id(request.path_params["id"])
        if not isinstance(key, int) or key < 1:
            return _json(404, {"error": "not-found", "message": "a track id is an integer from 1 to 2^63-1"})
        try:
            read = await run_in_threadpool(reads.get, key)
        except TuneflowError as exc:
            log.warning("GET /tracks/{id} failed: %s", exc)
            return _json(503, {"error": "unavailable", "message": str(exc)},
                         {"Retry-After": str(self.limits.retry_after_s)})
        headers = {"X-Tuneflow-Read-Store": read.store.value}
        if read.document is None:
            return _json(404, {"error": "not-found", "message": f"no track {key}"}, headers)
        return Response(orjson.dumps(read.document, default=str), 200, headers, media_type="application/json")

    async def _single(self, body: bytes, reservation: Reservation) -> Response:
        checked = check_change(body)
        if isinstance(checked, Rejection):
            return self._rejected(checked)
        key, value = checked
        await self._deliver([Record(key, value)], reservation)
        return _json(202, {"accepted": 1, "track_id": int(key)})

    # -- admission: everything before a record is looked at -------------------------------------------------

    async def _admitted(self, request: Request, types: frozenset[str] | None,
                        handle: Callable[[bytes, Reservation], Awaitable[Response]]) -> Response:
        reservation = Reservation(self.budget)
        body_read = False
        try:
            self._authenticate(request)
            if types is not None and media_type(request.headers.get("content-type")) not in types:
                expected = sorted(types)[0] if len(types) == 1 else "application/x-ndjson"
                got = request.headers.get("content-type") or "none"
                raise Refused(415, "unsupported-media-type",
                              f"{request.method} {request.url.path} takes {expected}, not {got}")
            length = declared_length(request.headers.get("content-length"), self.limits)
            if not self.ingest.ready():
                raise busy(self.limits, NOT_READY, unread=True)
            if length is not None and not reservation.grow_to(length):
                raise busy(self.limits, "too many bytes in flight", unread=True)
            body = await read_body(request.stream(), self.limits, reservation)
            body_read = True
            self._verify_signature(request, body)
            return await handle(body, reservation)
        except Refused as refused:
            headers = dict(refused.headers)
            if not body_read:
                headers["Connection"] = "close"
            return _json(refused.status, {"error": refused.error, "message": refused.message}, headers)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening; counted, never sent
        finally:
            reservation.release()

    def _authenticate(self, request: Request) -> None:
        tokens = self.ingest.tokens
        if tokens is None:
            return
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise Refused(401, "unauthorized", "a bearer token is required: Authorization: Bearer <token>",
                          {"WWW-Authenticate": REALM})
        if not tokens.accepts(token):
            raise Refused(401, "unauthorized", "the bearer token is not valid",
                          {"WWW-Authenticate": REALM + ', error="invalid_token"'})

    def _verify_signature(self, request: Request, body: bytes) -> None:
        signatures = self.ingest.signatures
        if signatures is None:
            return
        target = request.scope["raw_path"].decode("latin-1")
        if request.scope["query_string"]:
            target += "?" + request.scope["query_string"].decode("latin-1")
        refusal = signatures.refusal(request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER),
                                     request.method, target, body)
        if refusal is not None:
            if refusal.status == 503:
                raise busy(self.limits, refusal.message)
            raise Refused(refusal.status, "forbidden", refusal.message)

    # -- records --------------------------------------------------------------------------------------------

    async def _deliver(self, records: list[Record], reservation: Reservation) -> None:
        """Hand the records to the producer and wait until Kafka acknowledged all of them."""
        if not reservation.grow_to(reservation.size + sum(len(r.value) for r in records)):
            raise busy(self.limits, "too many bytes in flight")
        if not self.ingest.ready():
            raise busy(self.limits, NOT_READY)
        intake, timeout_s = self.ingest.intake, self.limits.ack_timeout_s
        ticket = Ticket(asyncio.get_running_loop(), len(records))
        if not intake.offer(records, ticket):
            raise busy(self.limits, "the source is stopping; nothing was written")
        try:
            delivery = await asyncio.wait_for(asyncio.shield(ticket.future), timeout_s)
        except TimeoutError:
            handed = intake.withdraw(ticket)
            if ticket.future.done() and ticket.future.result() is Delivery.ACKNOWLEDGED:
                delivery = Delivery.ACKNOWLEDGED
            elif handed == 0:
                raise busy(self.limits, f"Kafka did not take the records within {timeout_s:g}s; none was "
                                        "written") from None
            else:
                raise busy(self.limits, f"Kafka did not acknowledge the records within {timeout_s:g}s; some may "
                                        "be written: send them again (versioned, so a repeat is harmless)") from None
        if delivery is Delivery.CLOSED:
            raise busy(self.limits, "the source is stopping; nothing was written")
        if delivery is Delivery.PARTIAL:
            raise busy(self.limits, "the source is stopping; some records may be written: send them again to "
                                    "another instance (versioned, so a repeat is harmless)")
        self.ingest.metrics.accepted.inc(len(records))

    def _rejected(self, rejection: Rejection) -> Response:
        self._count_rejected(rejection.kind)
        if rejection.kind == "invalid":
            return _json(422, {"error": "invalid", "message": "the record breaks the catalog's rules",
                               "reasons": rejection.reasons})
        if rejection.kind == "malformed-json":
            return _json(400, {"error": "malformed-json", "message": rejection.reasons[0]["message"],
                               "line": rejection.line, "column": rejection.column})
        return _json(400, {"error": "bad-request", "message": "the body is empty"})

    def _count_rejected(self, kind: str) -> None:
        self.ingest.metrics.rejected(kind)
        self.ingest.count_failed(kind, 1)


def _line_reasons(rejection: Rejection) -> list[dict[str, str]]:
    """A batch line is one physical line: malformed JSON is placed by column alone."""
    if rejection.kind != "malformed-json":
        return rejection.reasons
    return [{"field": r["field"], "message": r["message"].replace(_AT_LINE_ONE, " at column ")}
            for r in rejection.reasons]


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "bad-request")
    message = {404: f"no route {request.url.path}: see /openapi.json",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
    return _json(exc.status_code, {"error": error, "message": message}, dict(exc.headers or {}))


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
    return _json(500, {"error": "internal", "message": "the server failed to answer; its log says why"})


class _Measured:
    """Counts every answer by route template (never the raw path), method and status, and times it."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.metrics.answered(getattr(route, "path", UNMATCHED), method, status, time.perf_counter() - started)


def _path_id(raw: str) -> int | str:
    """A path's id as the integer it spells, for the model's strict integer check; anything else as it came.
    Digits past 64 bits stay text: orjson writes no wider integer, and the check refuses them as text too."""
    if raw.lstrip("-").isdigit() and raw.isascii():
        number = int(raw)
        if -(2**63) <= number < 2**64:
            return number
    return raw
