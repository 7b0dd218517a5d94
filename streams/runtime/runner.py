"""The batch loop: poll, run the app, send outputs and dead letters, make them durable, then commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.binders.base import Binder, InputBinding, OutputBinding, TransactionalOutput
from streams.errors import ConfigError, ServiceUnavailableError, TransientError
from streams.records import (
    ERROR_HEADER,
    ERROR_REASONS_HEADER,
    ORIGIN_APP_HEADER,
    ORIGIN_OFFSET_HEADER,
    ORIGIN_PARTITION_HEADER,
    ORIGIN_TOPIC_HEADER,
    Record,
)
from streams.runtime.contract import App, Failure, Outcome, ProcessorApp, SinkApp, SourceApp
from streams.runtime.keys import KeyPath
from streams.runtime.retry import RetriesExhaustedError, RetryPolicy, call_with_retries

LAG_EVERY_S = 5.0
# A source's callers wait for its acknowledgement (an HTTP answer, a replication feedback): a flush that has not
# finished in this time marks the instance not ready, and the retry goes on waiting for the same records (they stay
# queued in the producer, so nothing is lost or sent twice by giving up early).
SOURCE_FLUSH_S = 5.0
REVOKE_FLUSH_S = 10.0


@dataclass
class RunSpec:
    """Where one app instance reads and writes; topic names follow ARCHITECTURE.md."""

    stream: str
    label: str
    instance: int = 0
    inputs: list[str] = field(default_factory=list)
    output: str | None = None
    group: str | None = None
    batch_size: int = 500
    batch_timeout_s: float = 0.2
    exactly_once: bool = False
    commit_interval_s: float = 1.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def dlq_topic(self) -> str:
        return f"{self.stream}.{self.label}.dlq"

    @property
    def consumer_group(self) -> str:
        return self.group or self.stream


RETRIED_OPERATIONS = ("setup", "poll", "write", "flush", "commit")  # what `_retrying` names


class Runner:
    def __init__(self, app: App[Any], binder: Binder, spec: RunSpec) -> None:
        self.app = app
        self.binder = binder
        self.spec = spec
        self.metrics = app.context.metrics
        self.log = app.context.log
        self.stop_event = threading.Event()
        self.last_beat = time.monotonic()
        self.in_outage = False
        self._input: InputBinding | None = None
        self._output: OutputBinding | None = None
        self._last_lag = 0.0
        # The last record of each partition handled since the last commit: committing them covers the rest.
        self._uncommitted: dict[tuple[str | None, int | None], Record] = {}
        self._last_commit = time.monotonic()
        self.metrics.expect_retries(RETRIED_OPERATIONS)
        partition_key = getattr(app.options, "partition_key", None)
        self._key_path = KeyPath(partition_key) if partition_key else None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def stop(self) -> None:
        self.stop_event.set()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def run(self) -> None:
        """Run until `stop()`; the batch in hand is finished, flushed and committed before returning."""
        topics = [t for t in (self.spec.output, self.spec.dlq_topic) if t]
        self.binder.ensure_topics(topics)
        try:
            self._retrying("setup", self.app.setup)
            transactional_id = None
            if self.spec.exactly_once:
                transactional_id = f"{self.spec.stream}.{self.spec.label}.{self.spec.instance}"
            self._output = self.binder.output(transactional_id=transactional_id)
            if isinstance(self.app, SourceApp):
                self._run_source(self.app)
            else:
                self._input = self.binder.input(self.spec.inputs, self.spec.consumer_group,
                                                f"{self.spec.label}-{self.spec.instance}")
                self._input.on_revoke(lambda: self._commit_handled(patient=False))
                self._run_consumer()
        except RetriesExhaustedError:
            if not self.stopping:
                raise
            self.log.warning("stopped during an outage; uncommitted records will be read again")
        finally:
            self.metrics.ready.set(0)
            self._close()

    def _close(self) -> None:
        for closer in (self.app.close, *(b.close for b in (self._input, self._output) if b is not None)):
            try:
                closer()
            except Exception:
                self.log.exception("error while closing")

    # -- loops -----------------------------------------------------------------------------------------------

    def _run_source(self, source: SourceApp[Any]) -> None:
        assert self._output is not None and self.spec.output
        output = self._output
        self.metrics.ready.set(1)
        while not self.stopping:
            self.last_beat = time.monotonic()
            records = self._retrying("poll", lambda: source.poll(self.spec.batch_size, self.spec.batch_timeout_s))
            if not records:
                continue
            started = time.perf_counter()
            self.metrics.records_in.inc(len(records))
            output.send(self.spec.output, self._keyed(records))
            self._retrying("flush", lambda: output.flush(SOURCE_FLUSH_S))
            source.ack(records)
            self.metrics.records_out.inc(len(records))
            self.metrics.batch_seconds.observe(time.perf_counter() - started)

    def _run_consumer(self) -> None:
        assert self._input is not None
        self.metrics.ready.set(1)
        while not self.stopping:
            self.last_beat = time.monotonic()
            batch = self._input.poll(self.spec.batch_size, self.spec.batch_timeout_s)
            self._report_lag()
            if not batch:
                self._commit_handled()  # idle: nothing to amortise the commit over
                continue
            started = time.perf_counter()
            self.metrics.records_in.inc(len(batch))
            outcome = self._retrying("write" if isinstance(self.app, SinkApp) else "process",
                                     lambda b=batch: self._handle(b))
            self._deliver(batch, outcome)
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self._commit_handled()  # drain: what was handled becomes durable and committed before the app exits

    def _handle(self, batch: Sequence[Record]) -> Outcome:
        if isinstance(self.app, SinkApp):
            sink = self.app
            started = time.perf_counter()
            outcome = isolate(sink.write, batch)
            self.metrics.sink_write_seconds.observe(time.perf_counter() - started)
            return outcome
        assert isinstance(self.app, ProcessorApp)
        return isolate(self.app.process, batch)

    def _deliver(self, batch: Sequence[Record], outcome: Outcome) -> None:
        """Send outputs and dead letters; input offsets move only once those are durable.

        Without transactions, the flush and the commit happen once per `commit_interval_s` for every batch
        handled since, not once per batch: the producer keeps sending while the next batch is processed. A
        crash in between re-reads at most that interval's records (at-least-once; the sinks are idempotent).
        """
        assert self._input is not None and self._output is not None
        output, source = self._output, self._input
        dead = [self._dead_letter(failure) for failure in outcome.failures]
        if isinstance(output, TransactionalOutput) and self.spec.exactly_once:
            def transaction() -> None:
                output.begin()
                try:
                    self._send(output, outcome.outputs, dead)
                    output.commit_with_offsets(source, batch)
                except TransientError:
                    output.abort()
                    raise
            self._retrying("commit", transaction)
        else:
            self._send(output, outcome.outputs, dead)
            for record in batch:
                self._uncommitted[(record.topic, record.partition)] = record
            if time.monotonic() - self._last_commit >= self.spec.commit_interval_s:
                self._commit_handled()
        written = len(batch) - len(outcome.failures) if isinstance(self.app, SinkApp) else len(outcome.outputs)
        self.metrics.records_out.inc(written)
        for failure in outcome.failures:
            self.metrics.failed(failure.kind)
        self.metrics.dlq_records.inc(len(dead))

    def _commit_handled(self, patient: bool = True) -> None:
        """Flush the producer, then commit the offsets of every batch handled since the last commit.

        Inside a rebalance the group is waiting, so `patient=False` tries once without backoff; if that
        fails, the new owner of those partitions reads them again.
        """
        self._last_commit = time.monotonic()
        if not self._uncommitted or self._input is None or self._output is None:
            return
        source, output, marks = self._input, self._output, list(self._uncommitted.values())
        if patient:
            self._retrying("flush", output.flush)
            self._retrying("commit", lambda: source.commit(marks))
        else:
            output.flush(REVOKE_FLUSH_S)
            source.commit(marks)
        self._uncommitted.clear()

    def _keyed(self, records: Sequence[Record]) -> Sequence[Record]:
        return records if self._key_path is None else self._key_path.keyed(records)

    def _send(self, output: OutputBinding, outputs: list[Record], dead: list[Record]) -> None:
        if outputs and self.spec.output:
            output.send(self.spec.output, self._keyed(outputs))
        if dead:
            output.send(self.spec.dlq_topic, dead)

    def _dead_letter(self, failure: Failure) -> Record:
        record = failure.record
        headers = dict(record.headers)
        headers.update({
            ERROR_HEADER: failure.kind.encode(),
            ERROR_REASONS_HEADER: orjson.dumps(failure.reasons),
            ORIGIN_APP_HEADER: f"{self.spec.stream}.{self.spec.label}".encode(),
            ORIGIN_TOPIC_HEADER: str(record.topic).encode(),
            ORIGIN_PARTITION_HEADER: str(record.partition).encode(),
            ORIGIN_OFFSET_HEADER: str(record.offset).encode(),
        })
        value = record.value if isinstance(record.value, bytes) else orjson.dumps(record.value)
        return Record(key=record.key, value=value, headers=headers)

    # -- outages and lag -------------------------------------------------------------------------------------

    def _retrying(self, operation: str, call: Callable[[], Any]) -> Any:
        def on_retry(attempt: int, exc: TransientError, delay: float) -> None:
            if not self.in_outage:
                self.in_outage = True
                self.metrics.ready.set(0)
                if self._input is not None:
                    self._input.pause()
            self.metrics.retried(operation)
            self.log.warning("%s failed (attempt %d), retrying in %.1fs: %s", operation, attempt + 1, delay, exc)

        result = call_with_retries(call, self.spec.retry, on_retry, wait=self._wait, stopping=lambda: self.stopping)
        if self.in_outage:
            self.in_outage = False
            self.metrics.ready.set(1)
            if self._input is not None:
                self._input.resume()
            self.log.info("%s recovered", operation)
        return result

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            self.last_beat = time.monotonic()
            if self._input is not None:
                self._input.keepalive()
            self.stop_event.wait(min(left, 0.5))

    def _report_lag(self) -> None:
        now = time.monotonic()
        if self._input is None or now - self._last_lag < LAG_EVERY_S:
            return
        self._last_lag = now
        try:
            for item in self._input.lag():
                self.metrics.lag(item.topic, item.partition, item.lag)
        except TransientError as exc:
            self.log.debug("lag unavailable: %s", exc)


def isolate(function: Callable[[Sequence[Record]], Outcome], batch: Sequence[Record]) -> Outcome:
    """Run a batch function; if it raises, bisect so that only the records that raise become failures."""
    try:
        return function(batch)
    except (TransientError, ConfigError, ServiceUnavailableError):
        raise  # about the app's settings or a service, not about any record: never dead-letter a batch for it
    except Exception as exc:
        if len(batch) == 1:
            reason = {"field": "", "message": f"{type(exc).__name__}: {exc}"}
            return Outcome(failures=[Failure(batch[0], [reason], kind="error")])
        middle = len(batch) // 2
        outcome = isolate(function, batch[:middle])
        outcome.extend(isolate(function, batch[middle:]))
        return outcome
