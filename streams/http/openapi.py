"""The OpenAPI 3.1 description of the `http` source: every route, request schemas generated from the catalog model.

JSON Schema from pydantic is draft 2020-12, the dialect OpenAPI 3.1 uses, so the catalog's own models go in as
they are: the document cannot drift from what `check_change` accepts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, TypeAdapter

from streams.catalog.changes import ADAPTER
from streams.http.auth import SIGNATURE_HEADER, TIMESTAMP_HEADER
from streams.http.limits import Limits

_REF = "#/components/schemas/{model}"


class Reason(BaseModel):
    field: str = Field(description="Dotted path of the field at fault; empty for the record as a whole.")
    message: str


class Problem(BaseModel):
    """Every answer other than 2xx; never a stack trace."""

    error: str = Field(description="A short code: malformed-json, invalid, unauthorized, forbidden, not-found, "
                                   "method-not-allowed, timeout, too-large, too-many-lines, unsupported-media-type, "
                                   "unavailable, bad-request, internal.")
    message: str
    reasons: list[Reason] | None = Field(default=None, description="Every problem of an invalid record (422).")
    line: int | None = Field(default=None, description="Where malformed JSON breaks (400), from 1.")
    column: int | None = None


class RejectedLine(BaseModel):
    line: int = Field(description="Line number in the NDJSON body, from 1 (blank lines count).")
    reasons: list[Reason]


class Accepted(BaseModel):
    """The records are durable in Kafka (acknowledged by every in-sync replica)."""

    accepted: int
    track_id: int | None = Field(default=None, description="The track a single record or delete named.")
    rejected: list[RejectedLine] = Field(default_factory=list, description="Batches: every rejected line.")


def openapi_document(limits: Limits, signed: bool, title: str = "tuneflow http source",
                     reads: bool = False) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    change = _schema(ADAPTER, schemas)
    change["description"] = "A track upsert (the `tracks` document, CATALOG.md) or a delete `{op: delete, ...}`."
    schemas["TrackChange"] = change
    for model in (Reason, Problem, RejectedLine, Accepted):
        schemas[model.__name__] = _schema(TypeAdapter(model), schemas)

    security: list[dict[str, list[str]]] = [{"bearer": []}]
    auth_answers = {"401": _problem("No or wrong bearer token (WWW-Authenticate says which).")}
    if signed:
        auth_answers["403"] = _problem("Missing or bad signature, stale timestamp, or a replayed request.")
    ingest_answers = {
        **auth_answers,
        "408": _problem("The body did not arrive within the body read timeout."),
        "413": _problem(f"The body is over --max-body ({limits.max_body} bytes)."),
        "503": _problem("Kafka is unreachable or the producer's queue is full; see Retry-After."),
    }
    signing = [
        {"name": TIMESTAMP_HEADER, "in": "header", "required": True, "schema": {"type": "integer"},
         "description": "Unix seconds; refused outside --hmac-window-s of the server's clock."},
        {"name": SIGNATURE_HEADER, "in": "header", "required": True, "schema": {"type": "string"},
         "description": "`sha256=` + hex HMAC-SHA256 of `<timestamp>\\n<METHOD>\\n<path?query>\\n<body>`."},
    ] if signed else []

    def accepted(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": _ref("Accepted")}}}

    paths: dict[str, Any] = {
        "/tracks": {"post": {
            "summary": "Ingest one track upsert or delete",
            "operationId": "postTrack", "security": security, "parameters": signing,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("TrackChange")}}},
            "responses": {
                "202": accepted("The record is durable in Kafka."),
                "400": _problem("Malformed JSON: line and column say where."),
                "415": _problem("The body is not application/json."),
                "422": _problem("The record breaks the catalog's rules: every {field, message}."),
                **ingest_answers,
            },
        }},
        "/tracks/batch": {"post": {
            "summary": "Ingest NDJSON: one track upsert or delete a line",
            "operationId": "postTrackBatch", "security": security, "parameters": signing,
            "requestBody": {"required": True, "description": f"Up to --max-batch ({limits.max_batch}) non-blank "
                            "lines, each a TrackChange. Each line stands alone: a rejected line is not written.",
                            "content": {"application/x-ndjson": {"schema": _ref("TrackChange")}}},
            "responses": {
                "202": accepted("Every accepted line is durable in Kafka; `rejected` lists the others."),
                "400": _problem("An empty body."),
                "413": _problem(f"Over --max-body bytes or over --max-batch ({limits.max_batch}) lines."),
                "415": _problem("The body is not NDJSON (application/x-ndjson)."),
                "422": _problem("No line was accepted; `rejected` lists every line's reasons.",
                                schema="Accepted"),
                **{k: v for k, v in ingest_answers.items() if k != "413"},
            },
        }},
        "/tracks/{id}": {"delete": {
            "summary": "Delete a track, versioned: a store keeps the newer of this delete and any upsert",
            "operationId": "deleteTrack", "security": security,
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}},
                {"name": "updated_at", "in": "query", "required": True,
                 "schema": {"type": "string", "format": "date-time"},
                 "description": "The delete's version (ISO-8601); a newer upsert of the track wins over it."},
                *signing,
            ],
            "responses": {
                "202": accepted("The delete is durable in Kafka."),
                "422": _problem("A bad id or a missing or bad updated_at."),
                **{k: v for k, v in ingest_answers.items() if k != "413"},
            },
        }},
        "/healthz": {"get": _probe("getHealth", "200 while the server's loop answers.")},
        "/readyz": {"get": _probe("getReady", "200 while records can be accepted; 503 while Kafka is not.")},
        "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "getMetrics", "security": [],
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "getOpenApi", "security": [],
                                  "responses": {"200": {"description": "OpenAPI 3.1",
                                                        "content": {"application/json": {
                                                            "schema": {"type": "object"}}}}}}},
    }
    if reads:
        paths["/tracks/{id}"]["get"] = {
            "summary": "A track's document, from the store the migration's switch reads now",
            "operationId": "getTrack", "security": security,
            "parameters": [{"name": "id", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 1}}],
            "responses": {
                "200": {"description": "The document; header X-Tuneflow-Read-Store names the store read.",
                        "content": {"application/json": {"schema": {"type": "object"}}}},
                "404": _problem("No such track (or not an id)."),
                **{k: v for k, v in auth_answers.items() if k == "401"},
                "503": _problem("The read store is unreachable; see Retry-After."),
            },
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1",
                 "description": "Authenticated ingestion of catalog tracks into a tuneflow stream. A 2xx answer "
                                "is sent only after Kafka acknowledged every accepted record."},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": security,
    }


def _schema(adapter: TypeAdapter[Any], schemas: dict[str, Any]) -> dict[str, Any]:
    schema = adapter.json_schema(ref_template=_REF)
    schemas.update(schema.pop("$defs", {}))
    return schema


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _problem(description: str, schema: str = "Problem") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _probe(operation: str, description: str) -> dict[str, Any]:
    return {"summary": description, "operationId": operation, "security": [],
            "responses": {"200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}},
                          "503": {"description": "not now"}}}
