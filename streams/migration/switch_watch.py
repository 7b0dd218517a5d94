"""The live switch in a running app instance: a background watcher that applies each new switch state without a
restart, exports `tuneflow_switch_phase`, and acks the epoch it applies (a `PhaseView`).

On Kafka it tails the compacted control topic and acks on the acks topic; without Kafka it polls the state database
and acks there. An app opens one with `open_phase_view(context, migration)` in `setup()` and closes it in `close()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from streams.binders.kafka import KafkaBinder
from streams.migration.phases import InstanceAck, Phase, SwitchState, routing
from streams.migration.switch_bus import (
    ACKS_TOPIC,
    CONTROL_TOPIC,
    HEARTBEAT_S,
    CompactedTail,
    ack_key,
    ensure_switch_topics,
    flush,
    producer,
)
from streams.migration.switch_store import SwitchStore, check_migration_name
from streams.runtime.contract import AppContext
from streams.runtime.metrics import AppMetrics

log = logging.getLogger("tuneflow.switch")
POLL_S = 0.1  # the state-polling view's period, well within the 1 s a change may take to reach every app
Listener = Callable[[SwitchState], None]


def initial_state(migration: str) -> SwitchState:
    return SwitchState(migration, Phase.LEGACY, routing(Phase.LEGACY).reads, 0)


class SwitchWatch:
    """What both watchers share: the state applied now, listeners, the gauge and the ack of each state applied."""

    def __init__(self, migration: str, stream: str, app: str, instance: str | int,
                 metrics: AppMetrics | None = None) -> None:
        self.migration = check_migration_name(migration)
        self.stream, self.app, self.instance = stream, app, str(instance)
        self._metrics = metrics or AppMetrics(CollectorRegistry(), stream, app, int(instance))
        self._state = self._acked = initial_state(migration)
        self._listeners: list[Listener] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_heartbeat = 0.0

    def current(self) -> SwitchState:
        return self._state

    def on_change(self, listener: Listener) -> None:
        """Call `listener(new_state)` on the watcher's thread after `current()` changed and before the instance
        acks it: a writer waits there until its batches begun under the old state have landed, so that the ack
        means every write it acknowledged is in the stores the next phase reads from."""
        self._listeners.append(listener)

    def start(self) -> SwitchWatch:
        self._apply(self._load(), first=True)
        self._thread = threading.Thread(target=self._loop, name=f"switch-watch-{self.migration}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._withdraw()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                newest = self._poll()
                if newest is not None and newest.epoch > self._state.epoch:
                    self._apply(newest)
                elif self._acked.epoch < self._state.epoch:
                    self._settle(self._state)  # a listener failed last time: try again before acking
                elif time.monotonic() >= self._next_heartbeat:
                    self._ack(self._acked)
            except Exception:  # a broker or database hiccup must not end the watch; the next round retries
                log.exception("switch watch of %s: cannot apply the switch; retrying", self.migration)
                self._stop.wait(1.0)

    def _apply(self, state: SwitchState, first: bool = False) -> None:
        previous, self._state = self._state, state
        self._metrics.switch_applied(self.migration, state.phase.number, state.epoch)
        if first:
            self._ack(state)
            return
        log.info("switch %s: %s (reads %s, epoch %d) → %s (reads %s, epoch %d)", self.migration,
                 previous.phase, previous.reads, previous.epoch, state.phase, state.reads, state.epoch)
        self._settle(state)

    def _settle(self, state: SwitchState) -> None:
        """Run the listeners, then ack: a listener that fails leaves the ack at the last state fully applied."""
        for listener in self._listeners:
            listener(state)
        self._ack(state)

    def _ack(self, state: SwitchState) -> None:
        self._acked = state
        self._report(InstanceAck(self.migration, self.stream, self.app, self.instance, state.epoch, state.phase,
                                 time.time()))
        self._next_heartbeat = time.monotonic() + HEARTBEAT_S

    # -- what each transport does ---------------------------------------------------------------------------

    def _load(self) -> SwitchState:
        """The state now (at start), the initial one when the switch was never set."""
        raise NotImplementedError

    def _poll(self) -> SwitchState | None:
        """The newest state seen since the last call, waiting briefly; None when nothing came."""
        raise NotImplementedError

    def _report(self, ack: InstanceAck) -> None:
        raise NotImplementedError

    def _withdraw(self) -> None:
        """This instance stops watching: drop its ack, so that no flip waits for it."""
        raise NotImplementedError


class KafkaSwitchWatch(SwitchWatch):
    def __init__(self, binder: KafkaBinder, migration: str, stream: str, app: str, instance: str | int,
                 metrics: AppMetrics | None = None) -> None:
        super().__init__(migration, stream, app, instance, metrics)
        self._binder = binder
        ensure_switch_topics(binder)
        self._key = migration.encode()
        self._ack_key = ack_key(migration, stream, app, self.instance)
        self._tail = CompactedTail(binder, CONTROL_TOPIC)
        self._producer = producer(binder)

    def start(self) -> SwitchWatch:
        """Returns once this instance's first ack is on Kafka: from then on every flip waits for it."""
        super().start()
        flush(self._producer, f"the ack of {self.stream}/{self.app}/{self.instance}", self._binder.timeout_s)
        return self

    def _newest(self, entries: list[tuple[bytes, dict[str, Any] | None]]) -> SwitchState | None:
        states = [SwitchState.from_json(value) for key, value in entries if key == self._key and value is not None]
        return max(states, key=lambda s: s.epoch, default=None)

    def _load(self) -> SwitchState:
        return self._newest(self._tail.to_end()) or initial_state(self.migration)

    def _poll(self) -> SwitchState | None:
        self._producer.poll(0)
        return self._newest(self._tail.poll(0.1))

    def _report(self, ack: InstanceAck) -> None:
        self._producer.produce(ACKS_TOPIC, key=self._ack_key, value=orjson.dumps(ack.to_json()))
        self._producer.poll(0)

    def _withdraw(self) -> None:
        try:
            self._producer.produce(ACKS_TOPIC, key=self._ack_key, value=None)
            flush(self._producer, f"the exit of {self.stream}/{self.app}/{self.instance}", self._binder.timeout_s)
        finally:
            self._tail.close()


class StatePollingWatch(SwitchWatch):
    def __init__(self, store: SwitchStore, migration: str, stream: str, app: str, instance: str | int,
                 metrics: AppMetrics | None = None, on_close: Callable[[], None] | None = None) -> None:
        super().__init__(migration, stream, app, instance, metrics)
        self._store = store
        self._on_close = on_close

    def _load(self) -> SwitchState:
        found = self._store.find(self.migration)
        return initial_state(self.migration) if found is None else found.state

    def _poll(self) -> SwitchState | None:
        self._stop.wait(POLL_S)
        found = self._store.find(self.migration)
        return None if found is None else found.state

    def _report(self, ack: InstanceAck) -> None:
        self._store.ack(ack)

    def _withdraw(self) -> None:
        try:
            self._store.forget_ack(self.migration, self.stream, self.app, self.instance)
        finally:
            if self._on_close is not None:
                self._on_close()


def open_phase_view(context: AppContext, migration: str) -> SwitchWatch:
    """The live switch of `migration` for an app instance, started: over the control topic when the app runs on the
    Kafka binder, else by polling the platform state database."""
    if isinstance(context.binder, KafkaBinder):
        watch: SwitchWatch = KafkaSwitchWatch(context.binder, migration, context.stream, context.label,
                                              context.instance, context.metrics)
    else:
        from streams.state import open_state

        state = open_state()
        watch = StatePollingWatch(SwitchStore(state), migration, context.stream, context.label, context.instance,
                                  context.metrics, on_close=state.close)
    return watch.start()
