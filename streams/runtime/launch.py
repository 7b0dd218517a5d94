"""Starts one app instance in this process: options, binder, harness, HTTP endpoint, signal handling."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from streams.binders.base import Binder
from streams.errors import ConfigError
from streams.runtime.contract import AppContext, AppKind, parse_options
from streams.runtime.health import HealthServer, beating
from streams.runtime.loader import import_app, load_app
from streams.runtime.memory import EXIT_MEMORY, MemoryGuard
from streams.runtime.metrics import AppMetrics
from streams.runtime.runner import Runner, RunSpec


@dataclass
class Instance:
    runner: Runner
    http: HealthServer | None


def build_instance(app_name: str, kind: AppKind | None, options: dict[str, Any], spec: RunSpec, binder: Binder,
                   registry: CollectorRegistry | None = None, port: int | None = None,
                   host: str = "127.0.0.1", uri: str | None = None) -> Instance:
    """`uri` (python:module:attribute, from the registry) loads a registered version instead of the built-in."""
    app_class = import_app(uri) if uri else load_app(app_name, kind)
    if kind is not None and app_class.kind != kind:
        raise ConfigError(f"{uri or app_name} is a {app_class.kind} app, not a {kind}")
    if app_class.kind != "source" and not spec.inputs:
        raise ConfigError(f"{app_class.kind} '{app_name}' needs an input topic (--input)")
    if app_class.kind != "sink" and not spec.output:
        raise ConfigError(f"{app_class.kind} '{app_name}' needs an output topic (--output)")
    parsed = parse_options(app_class, options)
    registry = registry or CollectorRegistry()
    metrics = AppMetrics(registry, spec.stream, spec.label, spec.instance)
    log = logging.getLogger(f"tuneflow.{spec.stream}.{spec.label}.{spec.instance}")
    context = AppContext(stream=spec.stream, label=spec.label, instance=spec.instance, binder=binder,
                         metrics=metrics, log=log)
    runner = Runner(app_class(parsed, context), binder, spec)
    http = None
    if port is not None:
        http = HealthServer(registry, alive=beating(lambda: runner.last_beat),
                            ready=metrics.is_ready, host=host, port=port)
    return Instance(runner, http)


def run_instance(instance: Instance, port_file: str | None = None, max_memory_mb: int | None = None) -> int:
    """Serve until SIGTERM/SIGINT, then drain the batch in hand, flush, commit and return the exit code: 0, or
    EXIT_MEMORY when the instance stopped because its RSS went past `max_memory_mb`."""
    runner = instance.runner
    runner.metrics.watch_memory(max_memory_mb)
    guard = None
    if max_memory_mb is not None:
        def over_limit(used_mb: float) -> None:
            runner.log.error("memory limit exceeded: RSS %.0f MiB > %d MiB (deployer.%s.memory); draining and "
                             "exiting", used_mb, max_memory_mb, runner.spec.label)
            runner.stop()

        guard = MemoryGuard(max_memory_mb, over_limit)
        guard.start()

    def on_signal(signum: int, _frame: object) -> None:
        runner.log.info("received %s: draining", signal.Signals(signum).name)
        runner.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if instance.http is not None:
        instance.http.start()
        runner.log.info("metrics and health on http://127.0.0.1:%d", instance.http.port)
        if port_file:
            _write_atomically(Path(port_file), f"{instance.http.port}\n")
    _freeze_startup_objects()
    try:
        runner.run()
    finally:
        if guard is not None:
            guard.close()
        if instance.http is not None:
            instance.http.close()
    return EXIT_MEMORY if guard is not None and guard.exceeded_at is not None else 0


def _freeze_startup_objects() -> None:
    """Modules, schemas and clients live as long as the process: full collections then scan only what the
    batch loop allocates, not every object the imports made."""
    gc.collect()
    gc.freeze()


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(stream=sys.stderr, level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def parse_option_tokens(tokens: list[str]) -> dict[str, Any]:
    """`--key=value` (or a bare `--flag` for true), as in the stream DSL."""
    options: dict[str, Any] = {}
    for token in tokens:
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"app options are written --key=value; got {token!r}")
        key, sep, value = token[2:].partition("=")
        options[key] = value if sep else True
    return options
