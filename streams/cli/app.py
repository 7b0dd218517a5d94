"""`tuneflow app …`: list the installed apps and run one instance of an app."""

from __future__ import annotations

import click

from streams.runtime.loader import available_apps, load_app


@click.group("app")
def app() -> None:
    """Apps: the sources, processors and sinks streams are made of."""


@app.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_apps(as_json: bool) -> None:
    """List installed apps by kind."""
    apps = sorted(available_apps().items())
    if as_json:
        import orjson

        click.echo(orjson.dumps([{"kind": k, "name": n, "uri": f"python:{v}"} for (k, n), v in apps]).decode())
        return
    for (kind, name), target in apps:
        click.echo(f"{kind:<10} {name:<14} python:{target}")


@app.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.option("--kind", type=click.Choice(["source", "processor", "sink"]), help="When NAME is ambiguous.")
@click.option("--stream", required=True, help="Stream name: topic prefix and consumer group.")
@click.option("--label", help="App label in the stream [default: NAME].")
@click.option("--instance", default=0, show_default=True, type=click.IntRange(0))
@click.option("--input", "inputs", multiple=True, help="Input topic (repeatable) [default: none].")
@click.option("--output", help="Output topic [default: <stream>.<label> for sources and processors].")
@click.option("--group", help="Consumer group [default: the stream name].")
@click.option("--binder", "binder_name", default="kafka", show_default=True, type=click.Choice(["kafka", "memory"]))
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--batch-timeout-ms", default=200, show_default=True, type=click.IntRange(1, 60_000))
@click.option("--commit-interval-ms", default=1000, show_default=True, type=click.IntRange(0, 600_000),
              help="How often outputs are flushed and input offsets committed (0: after every batch).")
@click.option("--exactly-once", is_flag=True, help="Kafka transactions for Kafka-to-Kafka processors.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port of /metrics, /healthz, /readyz (0 picks a free one).")
@click.option("--port-file", type=click.Path(dir_okay=False),
              help="Write the HTTP port here once it listens (how a deployer learns a port picked with --port 0).")
@click.option("--log-level", default="INFO", show_default=True)
@click.argument("app_options", nargs=-1, type=click.UNPROCESSED)
def run(name: str, kind: str | None, stream: str, label: str | None, instance: int, inputs: tuple[str, ...],
        output: str | None, group: str | None, binder_name: str, batch_size: int, batch_timeout_ms: int,
        commit_interval_ms: int, exactly_once: bool, port: int, port_file: str | None,
        log_level: str, app_options: tuple[str, ...]) -> None:
    """Run one instance of app NAME until SIGTERM. App options follow as --key=value.

    \b
    Example:
      tuneflow app run normalize --stream t1 --input t1.kafka -- --strict
    """
    from streams import settings
    from streams.binders.factory import create_binder
    from streams.runtime.launch import build_instance, configure_logging, parse_option_tokens, run_instance
    from streams.runtime.runner import RunSpec

    configure_logging(log_level)
    label = label or name
    app_class = load_app(name, kind)  # type: ignore[arg-type]
    if output is None and app_class.kind != "sink":
        output = f"{stream}.{label}"
    spec = RunSpec(stream=stream, label=label, instance=instance, inputs=list(inputs), output=output, group=group,
                   batch_size=batch_size, batch_timeout_s=batch_timeout_ms / 1000, exactly_once=exactly_once,
                   commit_interval_s=commit_interval_ms / 1000)
    options = parse_option_tokens([t for t in app_options if t != "--"])
    binder = create_binder(binder_name, bootstrap=settings.kafka_bootstrap()) if binder_name == "kafka" \
        else create_binder(binder_name)
    run_instance(build_instance(name, app_class.kind, options, spec, binder, port=port), port_file)
