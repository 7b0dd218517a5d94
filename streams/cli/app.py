"""`tuneflow app …`: list the installed apps and run one instance of an app."""

from __future__ import annotations

from dataclasses import asdict

import click
import orjson

from streams.registry import Registry, app_options
from streams.runtime.loader import import_app, load_app
from streams.state import AppRecord


@click.group("app")
def app() -> None:
    """Apps: the sources, processors and sinks streams are made of."""


KINDS = click.Choice(["source", "processor", "sink"])


def _registry() -> Registry:
    from streams.state import open_state

    return Registry(open_state())


@app.command("list")
@click.option("--type", "kind", type=KINDS, help="Only apps of this kind.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_apps(kind: str | None, as_json: bool) -> None:
    """List registered apps: built-ins and your own, every version (* marks the default)."""
    apps = _registry().state.list_apps(kind)
    if as_json:
        click.echo(orjson.dumps([_app_json(a) for a in apps]).decode())
        return
    for record in apps:
        mark = "*" if record.is_default else " "
        click.echo(f"{record.kind:<10} {record.name:<14} {mark}{record.version:<10} {record.uri}")


@app.command("register")
@click.option("--name", required=True, help="Name used in stream definitions.")
@click.option("--type", "kind", required=True, type=KINDS, help="What the app is.")
@click.option("--uri", required=True, help="python:module:attribute of the app class.")
@click.option("--version", help="[default: the version of the package holding the module]")
@click.option("--default", "make_default", is_flag=True, help="Make this version the default.")
@click.option("--force", is_flag=True, help="Replace the URI of an already registered version.")
def register(name: str, kind: str, uri: str, version: str | None, make_default: bool, force: bool) -> None:
    """Register an app (or a new version of one); the URI must import an app of that type."""
    record = _registry().register(kind, name, uri, version=version, default=True if make_default else None,
                                  force=force)
    suffix = " (default)" if record.is_default else ""
    click.echo(f"registered {record.kind} {record.name} {record.version}{suffix}: {record.uri}")


@app.command("unregister")
@click.argument("name")
@click.option("--type", "kind", type=KINDS, help="When NAME is both a source and a sink, say which.")
@click.option("--version", help="Only this version [default: every version].")
def unregister(name: str, kind: str | None, version: str | None) -> None:
    """Remove an app, or one version of it, from the registry."""
    for record in _registry().state.unregister_app(name, kind=kind, version=version):
        click.echo(f"unregistered {record.kind} {record.name} {record.version}")


@app.command("default")
@click.argument("name")
@click.argument("version")
@click.option("--type", "kind", type=KINDS, help="When NAME is both a source and a sink, say which.")
def default(name: str, version: str, kind: str | None) -> None:
    """Make VERSION the version streams use when they name no version."""
    record = _registry().state.set_default_version(name, version, kind=kind)
    click.echo(f"{record.kind} {record.name}: default version {record.version}")


@app.command("info")
@click.argument("name")
@click.option("--type", "kind", type=KINDS, help="When NAME is both a source and a sink, say which.")
@click.option("--version", help="[default: the default version]")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(name: str, kind: str | None, version: str | None, as_json: bool) -> None:
    """Show an app: kind, version, URI and its options with types, defaults and documentation."""
    record, app_class = _registry().load(name, kind=kind, version=version)
    options = app_options(app_class)
    if as_json:
        payload = {**_app_json(record), "options": [asdict(o) for o in options]}
        click.echo(orjson.dumps(payload, default=str).decode())
        return
    click.echo(f"{record.kind} {record.name} {record.version}{' (default)' if record.is_default else ''}")
    click.echo(f"  uri: {record.uri}")
    doc = (app_class.__doc__ or "").strip().splitlines()
    if doc:
        click.echo(f"  {doc[0]}")
    click.echo("  options:" if options else "  options: none")
    for option in options:
        given = "required" if option.required else f"default {option.default}"
        click.echo(f"    --{option.name}=<{option.type}>  ({given})  {option.description}")


def _app_json(record: AppRecord) -> dict[str, object]:
    return {"kind": record.kind, "name": record.name, "version": record.version, "default": record.is_default,
            "uri": record.uri, "registered_at": record.registered_at.isoformat()}


@app.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.option("--kind", type=click.Choice(["source", "processor", "sink"]), help="When NAME is ambiguous.")
@click.option("--uri", help="python:module:attribute of the app class [default: the built-in app NAME].")
@click.option("--stream", required=True, help="Stream name: topic prefix and consumer group.")
@click.option("--label", help="App label in the stream [default: NAME].")
@click.option("--instance", default=0, show_default=True, type=click.IntRange(0),
              help="Index of this instance among the app's instances (metrics label, client ids).")
@click.option("--input", "inputs", multiple=True, help="Input topic (repeatable) [default: none].")
@click.option("--output", help="Output topic [default: <stream>.<label> for sources and processors].")
@click.option("--group", help="Consumer group [default: the stream name].")
@click.option("--binder", "binder_name", default="kafka", show_default=True, type=click.Choice(["kafka", "memory"]),
              help="How apps talk: Kafka topics, or in-process topics (memory).")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000),
              help="Most records per batch.")
@click.option("--batch-timeout-ms", default=200, show_default=True, type=click.IntRange(1, 60_000),
              help="Longest wait to fill a batch.")
@click.option("--commit-interval-ms", default=1000, show_default=True, type=click.IntRange(0, 600_000),
              help="How often outputs are flushed and input offsets committed (0: after every batch).")
@click.option("--exactly-once", is_flag=True, help="Kafka transactions for Kafka-to-Kafka processors.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port of /metrics, /healthz, /readyz (0 picks a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address of /metrics, /healthz, /readyz (0.0.0.0 in a pod, where the kubelet probes them).")
@click.option("--port-file", type=click.Path(dir_okay=False),
              help="Write the HTTP port here once it listens (how a deployer learns a port picked with --port 0).")
@click.option("--log-level", default="INFO", show_default=True, help="DEBUG, INFO, WARNING or ERROR.")
@click.option("--max-memory-mb", type=click.IntRange(1), help="Past this RSS, drain and exit with code 137 "
              "(what deployer.<app>.memory sets).")
@click.argument("app_options", nargs=-1, type=click.UNPROCESSED)
def run(name: str, kind: str | None, uri: str | None, stream: str, label: str | None, instance: int,
        inputs: tuple[str, ...],
        output: str | None, group: str | None, binder_name: str, batch_size: int, batch_timeout_ms: int,
        commit_interval_ms: int, exactly_once: bool, port: int, host: str, port_file: str | None,
        log_level: str, max_memory_mb: int | None, app_options: tuple[str, ...]) -> int:
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
    app_class = import_app(uri) if uri else load_app(name, kind)  # type: ignore[arg-type]
    if output is None and app_class.kind != "sink":
        output = f"{stream}.{label}"
    spec = RunSpec(stream=stream, label=label, instance=instance, inputs=list(inputs), output=output, group=group,
                   batch_size=batch_size, batch_timeout_s=batch_timeout_ms / 1000, exactly_once=exactly_once,
                   commit_interval_s=commit_interval_ms / 1000)
    options = parse_option_tokens([t for t in app_options if t != "--"])
    binder = create_binder(binder_name, bootstrap=settings.kafka_bootstrap()) if binder_name == "kafka" \
        else create_binder(binder_name)
    instance = build_instance(name, app_class.kind, options, spec, binder, port=port, host=host, uri=uri)
    return run_instance(instance, port_file, max_memory_mb)
