"""`http` source: tracks POSTed by the catalog's writers, validated in the request, answered once Kafka has them.

Routes, checks and answers are in `streams/http/` (the ASGI app on Starlette and uvicorn, auth, limits); this file is
the options and the wiring to the runtime: `poll` hands the requests' records to the runner, which sends them with
the binder's idempotent producer to `<stream>.<label>` keyed by track id, and `ack` answers the requests.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ByteSize, Field

from sources.base import AppOptions, SourceApp
from streams import settings
from streams.errors import ConfigError
from streams.http.app import Ingest, build_app
from streams.http.auth import TOKENS_ENV, BearerTokens, Signatures
from streams.http.intake import Intake
from streams.http.limits import Limits
from streams.http.metrics import HttpMetrics
from streams.http.server import HttpServer
from streams.migration.phases import StoreRole
from streams.migration.reads import DocumentReader, RelationalReader, StoreReader, SwitchedReads
from streams.migration.switch_watch import open_phase_view
from streams.migration.template import catalog_template_path
from streams.records import Record


class HttpOptions(AppOptions):
    port: int = Field(default=8080, ge=0, le=65535, description="Port to listen on (0 picks a free one).")
    host: str = Field(default="127.0.0.1", description="Address to listen on (0.0.0.0: every interface).")
    token_file: str | None = Field(default=None, description=f"Bearer tokens, one a line, re-read when the file "
                                                             f"changes; {TOKENS_ENV} (comma-separated) adds more.")
    hmac_secret_file: str | None = Field(default=None, description="Require HMAC-SHA256 signatures by a secret "
                                                                   "from this file (one a line).")
    hmac_window_s: int = Field(default=300, ge=1, description="Signed timestamps older or newer than this refused.")
    insecure_no_auth: bool = Field(default=False, description="Accept requests without a token (tests only).")
    max_body: ByteSize = Field(default=ByteSize(1 << 20), ge=1, description="Largest body (413 past it).")
    max_batch: int = Field(default=1000, ge=1, description="Most NDJSON lines per batch request (413 past it).")
    max_buffered: ByteSize = Field(default=ByteSize(64 << 20), ge=1,
                                   description="Bytes all requests in flight may hold (503 past it).")
    header_timeout_s: float = Field(default=10.0, gt=0, description="Time allowed for a request's headers.")
    body_timeout_s: float = Field(default=30.0, gt=0, description="Time allowed for a request's body.")
    ack_timeout_s: float = Field(default=30.0, gt=0, description="Longest wait for Kafka's acknowledgement "
                                                                 "before a 503.")
    retry_after_s: int = Field(default=5, ge=1, description="Retry-After of a 503.")
    migration: str | None = Field(default=None, description="Follow this migration's switch: GET /tracks/{id} "
                                                           "reads from the store the switch reads now.")
    read_rdbms_url: str | None = Field(default=None, description="With --migration: the RDBMS to read tracks from "
                                                                 "through --read-template.")
    read_template: str | None = Field(default=None, description="With --migration: the template that maps the "
                                                                "RDBMS to documents [default: the catalog's].")
    read_mongo_uri: str = Field(default_factory=settings.mongo_uri,
                                description="With --migration: the document store to read tracks from "
                                            "[default: $TUNEFLOW_MONGO_URI].")
    read_database: str = Field(default="catalog", description="With --migration: the document store's database.")
    shadow_read_sample: float = Field(default=0.1, ge=0.0, le=1.0,
                                      description="Share of reads in the shadow phase also read from the other "
                                                  "store and compared (tuneflow_shadow_reads_total).")


class HttpSource(SourceApp[HttpOptions]):
    """Authenticated HTTP ingestion of track upserts and deletes (JSON, NDJSON batches, DELETE)."""

    name = "http"
    options_model = HttpOptions

    def setup(self) -> None:
        options, ctx = self.options, self.context
        tokens = None
        if not options.insecure_no_auth:
            tokens = BearerTokens.from_environment(options.token_file)
            if not tokens.configured:
                raise ConfigError(f"the http source has no token: give --token-file or set {TOKENS_ENV} "
                                  "(or --insecure-no-auth=true to accept anyone)")
        signatures = Signatures(options.hmac_secret_file, options.hmac_window_s) \
            if options.hmac_secret_file else None
        limits = Limits(max_body=options.max_body, max_batch=options.max_batch, max_buffered=options.max_buffered,
                        body_timeout_s=options.body_timeout_s, ack_timeout_s=options.ack_timeout_s,
                        retry_after_s=options.retry_after_s)
        self._intake = Intake()
        self._reads = self._switched_reads() if options.migration else None
        ingest = Ingest(self._intake, limits, tokens, signatures,
                        HttpMetrics(ctx.metrics.registry, ctx.stream, ctx.label, ctx.instance),
                        ctx.metrics.registry, ctx.metrics.is_ready, ctx.metrics.failed, self._reads)
        self._server = HttpServer(build_app(ingest), options.host, options.port, options.header_timeout_s).start()
        ctx.log.info("accepting tracks on http://%s:%d (bearer tokens %s, signatures %s)", self._server.host,
                     self._server.port, "off" if tokens is None else "on", "on" if signatures else "off")

    def _switched_reads(self) -> SwitchedReads:
        options, ctx = self.options, self.context
        assert options.migration is not None
        if not options.read_rdbms_url:
            raise ConfigError("--migration needs --read-rdbms-url: the RDBMS that GET /tracks/{id} reads while the "
                              "switch reads from it")
        template = options.read_template or str(catalog_template_path())
        readers: dict[StoreRole, DocumentReader] = {
            StoreRole.RDBMS: RelationalReader(options.read_rdbms_url, template, "tracks"),
            StoreRole.MONGO: StoreReader(options.read_mongo_uri, options.read_database, "tracks"),
        }
        self._view = open_phase_view(ctx, options.migration)
        return SwitchedReads(self._view, readers, options.shadow_read_sample, ctx.metrics.registry,
                             (ctx.stream, ctx.label, str(ctx.instance)))

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        return self._intake.take(max_records, timeout_s)

    def ack(self, records: Sequence[Record]) -> None:
        self._intake.ack(len(records))

    def close(self) -> None:
        intake, server = getattr(self, "_intake", None), getattr(self, "_server", None)
        if intake is not None:
            intake.close()
        if server is not None:
            server.close()
        reads, view = getattr(self, "_reads", None), getattr(self, "_view", None)
        if reads is not None:
            reads.close()
        if view is not None:
            view.close()
