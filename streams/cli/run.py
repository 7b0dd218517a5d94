"""`tuneflow run "<dsl>"`: a whole stream in this process, for trying things out (the embedded deployer)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import click

from streams.masking import mask_secrets
from streams.platform.run import EmbeddedRun, RunResult


@click.command("run")
@click.argument("definition")
@click.option("--binder", "binder_name", type=click.Choice(["memory", "kafka"]), default="memory", show_default=True,
              help="memory: topics inside this process; kafka: real topics on TUNEFLOW_KAFKA_BOOTSTRAP.")
@click.option("--name", default="run", show_default=True, help="Stream name: topic prefix and consumer group.")
@click.option("--properties", help='Deployment properties "k=v,…" as for `stream deploy` (count, options, version).')
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000),
              help="Most records per batch.")
@click.option("--port", type=click.IntRange(0, 65535),
              help="Serve /metrics, /healthz, /readyz here (0: any free port).")
@click.option("--dlq-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Memory binder: where dead letters are written at the end [default: $TUNEFLOW_HOME/runs/<name>].")
def run(definition: str, binder_name: str, name: str, properties: str | None, batch_size: int, port: int | None,
        dlq_dir: Path | None) -> None:
    """Run the stream DEFINITION in this process, each app instance a thread.

    Ends by itself when every source is a snapshot (jdbc) and every record is handled; otherwise runs until
    Ctrl-C, then drains. Dead letters on the memory binder are written to NDJSON files.

    \b
    Examples:
      tuneflow run "jdbc --url=sqlite:///legacy.db | normalize | mongo --uri=embedded:///tmp/store"
      tuneflow run --binder kafka "kafka --topic=raw | normalize | log"
    """
    from streams import settings
    from streams.binders.factory import create_binder
    from streams.platform.properties import parse_properties
    from streams.platform.service import stored_definitions
    from streams.registry import Registry
    from streams.state import open_state

    state = open_state()
    embedded = EmbeddedRun(name=name, definition=definition, binder=create_binder(binder_name),
                           registry=Registry(state), properties=parse_properties(properties or ""),
                           existing=stored_definitions(state) if binder_name == "kafka" else {},
                           batch_size=batch_size, dlq_dir=dlq_dir or settings.home() / "runs" / name)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    embedded.start(port=port)
    click.echo(f"running stream {name} on the {binder_name} binder: {mask_secrets(embedded.canonical)}")
    if embedded.deployer.port is not None:
        click.echo(f"metrics and health on http://127.0.0.1:{embedded.deployer.port}")
    if not embedded.deployer.bounded():
        click.echo("its sources do not end: Ctrl-C stops it")
    result = embedded.wait(stop, on_tick=_progress(embedded))
    _summary(result)


def _progress(embedded: EmbeddedRun) -> Callable[[], None] | None:
    if not sys.stderr.isatty():
        return None
    last = [0.0]

    def tick() -> None:
        if time.monotonic() - last[0] < 0.5:
            return
        last[0] = time.monotonic()
        parts = [f"{t.label} {t.records_out if t.kind == 'source' else t.records_in:,}"
                 for t in embedded.deployer.totals()]
        click.echo(f"\r  {' | '.join(parts)}", nl=False, err=True)

    return tick


def _summary(result: RunResult) -> None:
    if sys.stderr.isatty():
        click.echo("", err=True)
    how = "done: every source exhausted and every record handled" if result.finished else "stopped"
    click.echo(f"stream {result.stream} {how} ({result.seconds:.1f}s)")
    for t in result.totals:
        counts = f"out {t.records_out:,}" if t.kind == "source" else \
            f"in {t.records_in:,}  {'written' if t.kind == 'sink' else 'out'} {t.records_out:,}"
        dead = f"  dead letters {t.dead_letters:,}" if t.dead_letters else ""
        click.echo(f"  {t.label:<14} {t.kind:<10} ×{t.instances}  {counts}{dead}")
    for topic, path in result.dead_letter_files.items():
        click.echo(f"dead letters of {topic}: {path}")
    if result.late:
        click.echo(f"did not stop in time: {', '.join(result.late)}", err=True)
