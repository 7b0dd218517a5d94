"""`tuneflow stream …`: stream definitions. `validate` checks a definition without deploying anything."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click
import orjson

from streams.cli.watch import watch as watch_stream
from streams.dag import check
from streams.deployers.base import Deployer
from streams.dsl import check_stream_name, parse
from streams.errors import ConfigError
from streams.masking import mask_secrets
from streams.platform.properties import parse_properties, read_properties_file
from streams.platform.service import Rollout, StreamService


@click.group("stream")
def stream() -> None:
    """Streams: DSL definitions of Source | Processor | Sink apps wired by Kafka topics."""


@stream.command("validate")
@click.argument("name")
@click.option("--definition", required=True,
              help='The stream in the DSL, e.g. "kafka --topic=raw | normalize | mongo"')
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report: apps, topics, fan-in and fan-out.")
def validate(name: str, definition: str, as_json: bool) -> None:
    """Parse and check a definition: apps known and in place, options valid, labels unique, no cycle with the
    streams already defined.

    \b
    Example:
      tuneflow stream validate t1 --definition "kafka --topic=raw | normalize | mongo"
    """
    check_stream_name(name)
    service = _service()
    report = check(parse(name, definition), service.definitions(), service.registry.catalog())
    if as_json:
        _echo(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode())
        return
    _echo(f"stream {name}: valid")
    _echo(f"  {report.to_json()['definition']}")
    for app in report.apps:
        inputs = ", ".join(app.inputs) or "-"
        outputs = ", ".join(app.outputs) or "-"
        _echo(f"  {app.label:<14} {app.kind:<10} {app.app:<12} in: {inputs}  out: {outputs}")
    for destination in report.destinations.values():
        _echo(f"  :{destination.name:<13} writers: {', '.join(destination.writers) or '-'}  "
              f"readers: {', '.join(destination.readers) or '-'}")


def _service() -> StreamService:
    from streams import settings
    from streams.binders.factory import create_binder
    from streams.deployers.local import LocalDeployer
    from streams.state import open_state

    return StreamService(open_state(), LocalDeployer(settings.home()), lambda: create_binder("kafka"),
                         platforms={"kubernetes": _kubernetes})


def _kubernetes() -> Deployer:
    from streams.deployers.kubernetes.deployer import KubernetesDeployer

    return KubernetesDeployer.from_environment()


def _echo(text: str) -> None:
    """Everything this command prints, with passwords in URLs masked (definitions and options hold URLs)."""
    click.echo(mask_secrets(text))


def _echo_json(value: object) -> None:
    _echo(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode())


def _properties(properties: str | None, properties_file: str | None) -> tuple[str | None, dict[str, str] | None]:
    if properties is not None and properties_file is not None:
        raise click.UsageError("give --properties or --properties-file, not both")
    if properties_file is not None:
        return read_properties_file(Path(properties_file))
    if properties is not None:
        return properties, parse_properties(properties)
    return None, None


@stream.command("create")
@click.argument("name")
@click.option("--definition", required=True, help="The stream in the DSL.")
@click.option("--description", help="A note shown by `stream info`.")
@click.option("--deploy", "and_deploy", is_flag=True, help="Deploy it right away (with no properties).")
def create(name: str, definition: str, description: str | None, and_deploy: bool) -> None:
    """Define a stream; nothing runs until `stream deploy`."""
    service = _service()
    record = service.create(name, definition, description)
    _echo(f"created stream {name}: {record.canonical}")
    if and_deploy:
        release = service.deploy(name, "", {})
        _echo(f"deployed stream {name} (release {release.number})")


@stream.command("deploy")
@click.argument("name")
@click.option("--properties", help='Deployment properties "k=v,…": deployer.<app|*>.count, deployer.<app>.memory, '
                                   "deployer.<app>.cpu, app.<app|*>.<option>, version.<app>.")
@click.option("--properties-file", type=click.Path(exists=True, dir_okay=False), help="One key=value per line.")
@click.option("--platform", default="local", show_default=True,
              help="Where the apps run: local (processes on this machine) or kubernetes (TUNEFLOW_KUBECONFIG).")
@click.option("--dry-run", type=click.Choice(["client", "server"]), is_flag=False, flag_value="client",
              help="Print what would be deployed, change nothing; `--dry-run=server` also has the platform check it "
                   "(Kubernetes: a server-side dry-run apply, schema and admission).")
@click.option("-o", "--output", "form", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True,
              help="With --dry-run: how to print it.")
def deploy(name: str, properties: str | None, properties_file: str | None, platform: str, dry_run: str | None,
           form: str) -> None:
    """Start every app of the stream (as processes, or as Kubernetes workloads with --platform kubernetes);
    reuses the last properties when none are given. Secrets are never printed.

    \b
    Examples:
      tuneflow stream deploy t1 --properties "deployer.normalize.count=2"
      tuneflow stream deploy t1 --platform kubernetes --dry-run -o yaml
    """
    raw, parsed = _properties(properties, properties_file)
    service = _service()
    if dry_run is not None:
        manifest, number = service.plan(name, raw, parsed, platform)
        objects = service.deployer_for(platform).render(manifest, number, validate=dry_run == "server")
        if form == "json":
            _echo_json(objects)
        else:
            import yaml

            _echo(yaml.safe_dump_all(objects, sort_keys=False).rstrip("\n"))
        return
    release = service.deploy(name, raw, parsed, platform)
    counts = ", ".join(f"{a['label']}×{a['count']}" for a in release.manifest["apps"])
    where = "" if platform == "local" else f" on {platform}"
    _echo(f"deployed stream {name}{where} (release {release.number}): {counts}")


@stream.command("undeploy")
@click.argument("name")
def undeploy(name: str) -> None:
    """Stop every instance of the stream (each drains, flushes and commits first)."""
    stopped = _service().undeploy(name)
    _echo(f"undeployed stream {name}: stopped {stopped} instance{'s' if stopped != 1 else ''}")


@stream.command("destroy")
@click.argument("name")
@click.option("--drop-leftovers", "--drop-cdc-slots", "drop_leftovers", is_flag=True,
              help="Also drop what the apps keep outside the stream's topics (a CDC source's replication slot and "
                   "publication); without it, each is listed with how to drop it.")
def destroy(name: str, drop_leftovers: bool) -> None:
    """Undeploy the stream if it runs, then delete its definition and history."""
    done = _service().destroy(name, drop_leftovers=drop_leftovers)
    _echo(f"destroyed stream {name}")
    for leftover in done.leftovers:
        if done.dropped:
            _echo(f"dropped {leftover.what}")
        else:
            _echo(f"kept {leftover.what}; drop it with: {leftover.how}")


@stream.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_streams(as_json: bool) -> None:
    """Every stream with its status and definition."""
    streams = _service().state.list_streams()
    if as_json:
        _echo_json([{"name": s.name, "status": s.status.value, "definition": s.canonical} for s in streams])
        return
    for record in streams:
        _echo(f"{record.name:<16} {record.status.value:<11} {record.canonical}")


@stream.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(name: str, as_json: bool) -> None:
    """A stream's definition, status and deployment properties."""
    record = _service().state.get_stream(name)
    if as_json:
        _echo_json({"name": record.name, "status": record.status.value, "definition": record.definition,
                    "canonical": record.canonical, "description": record.description,
                    "deployment_properties": record.deployment_properties_raw,
                    "created_at": record.created_at, "updated_at": record.updated_at})
        return
    _echo(f"stream {record.name} ({record.status.value})")
    _echo(f"  definition: {record.canonical}")
    if record.description:
        _echo(f"  description: {record.description}")
    _echo(f"  deployment properties: {record.deployment_properties_raw or '(none)'}")


@stream.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--watch", is_flag=True, help="Redraw a live view every second (per-app rates, lag and its trend, "
                                            "instances up) until Ctrl-C.")
def status(name: str, as_json: bool, watch: bool) -> None:
    """Each instance as its own /healthz and /metrics report it now: up/down, ready, rates over 1 s, lag; on
    Kubernetes, each pod as the API server reports it, and the reason a workload's pods are refused."""
    if watch:
        if as_json:
            raise click.UsageError("--watch draws for a person; use --json alone for a machine")
        service = _service()
        service.state.get_stream(name)  # an unknown stream fails here, with its did-you-mean
        watch_stream(name, lambda: service.status(name))
        return
    instances = _service().status(name)
    if as_json:
        _echo_json([asdict(i) for i in instances])
        return
    if not instances:
        _echo(f"stream {name}: no instances (not deployed)")
        return
    if all(i.pid == 0 for i in instances):  # a platform of its own (pods): names and reasons, not pids
        _echo(f"{'app':<14} {'state':<9} {'ready':<6} name")
        for i in instances:
            _echo(f"{i.label:<14} {i.state:<9} {'yes' if i.ready else 'no':<6} {i.name}")
            if i.detail:
                _echo(f"{'':<14} {i.detail}")
        return
    _echo(f"{'app':<14} {'pid':>7} {'state':<9} {'in/s':>9} {'out/s':>9} {'failed/s':>9} {'lag':>8}")
    for i in instances:
        state = i.state if i.state != "up" or i.ready else "up, not ready"
        _echo(f"{i.label + '-' + str(i.index):<14} {i.pid:>7} {state:<9} {i.in_per_s:>9.1f} "
              f"{i.out_per_s:>9.1f} {i.failed_per_s:>9.1f} {i.lag:>8.0f}")


@stream.command("history")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def history(name: str, as_json: bool) -> None:
    """The stream's releases, oldest first, with what caused them when it was not a user (the autoscaler)."""
    releases = _service().state.releases(name)
    if as_json:
        _echo_json([{"release": r.number, "status": r.status.value, "created_at": r.created_at,
                     "cause": r.manifest.get("cause")} for r in releases])
        return
    for release in releases:
        cause = release.manifest.get("cause")
        _echo(f"{release.number:>4}  {release.status.value:<11} {release.created_at:%Y-%m-%d %H:%M:%S}"
              + (f"  {cause}" if cause else ""))


@stream.command("autoscale-run", hidden=True)
@click.argument("name")
@click.option("--port-file", type=click.Path(dir_okay=False, path_type=Path), help="Write the /metrics port here.")
def autoscale_run(name: str, port_file: Path | None) -> int:
    """The autoscaler of stream NAME, until SIGTERM (the local deployer starts and stops it)."""
    from streams.platform.autoscaler import run
    from streams.runtime.launch import configure_logging

    configure_logging("INFO")
    service = _service()
    service.state.get_stream(name)
    return run(service, name, port_file)


@stream.command("manifest")
@click.argument("name")
@click.option("--release", "number", type=click.IntRange(1), help="[default: the latest release]")
@click.option("--json", "as_json", is_flag=True, help="JSON (the manifest is printed as JSON either way).")
def manifest(name: str, number: int | None, as_json: bool) -> None:
    """The fully resolved apps, versions, options, topics and counts of a release."""
    state = _service().state
    release = state.release(name, number) if number is not None else state.latest_release(name)
    if release is None:
        raise ConfigError(f"stream '{name}' has no release yet: deploy it first")
    _echo_json(release.manifest)


def _rolled_out(name: str, rollout: Rollout) -> None:
    diff = rollout.diff
    for line in diff.lines():
        _echo(line)
    moves = [(verb, [a.label for a in diff.apps if a.change == change])
             for verb, change in (("restarted", "changed"), ("started", "added"), ("stopped", "removed"))]
    done = "; ".join(f"{verb} {', '.join(labels)}" for verb, labels in moves if labels)
    _echo(f"stream {name} is at release {rollout.release.number}: {done}")
    for topic, (before, after) in rollout.grown.items():
        _echo(f"topic {topic}: {before} → {after} partitions, one for each instance (keys move to new partitions "
              "once; the version guards keep the stores right)")
    for topics, left in rollout.undrained.items():
        click.echo(f"warning: {left:,} records of {topics} were left unread: no app of release "
                   f"{rollout.release.number} reads it (its last reader stopped after TUNEFLOW_READY_TIMEOUT_S)",
                   err=True)


@stream.command("update")
@click.argument("name")
@click.option("--properties", help='Properties to change, "k=v,…" (merged into the current ones).')
@click.option("--properties-file", type=click.Path(exists=True, dir_okay=False), help="One key=value per line.")
@click.option("--definition", help="A new DSL for the stream: apps may be added, removed or rewired.")
@click.option("--dry-run", is_flag=True, help="With --definition: print what would change, change nothing.")
def update(name: str, properties: str | None, properties_file: str | None, definition: str | None,
           dry_run: bool) -> None:
    """Change a stream. With --properties, only the apps whose settings change restart; with --definition, the
    apps added or changed start, then the removed and replaced ones stop (red/black: new ones first, and an
    app whose input topic goes out of use drains it before it stops). A diff of the release is printed.

    \b
    Examples:
      tuneflow stream update t1 --properties "app.normalize.require-isrc=true"
      tuneflow stream update t1 --definition "kafka --topic=raw | normalize | file --dir=/tmp/out" --dry-run
    """
    if definition is not None:
        if properties is not None or properties_file is not None:
            raise click.UsageError("give --definition or --properties, one change at a time")
        _redefine(name, definition, dry_run)
        return
    if dry_run:
        raise click.UsageError("--dry-run goes with --definition")
    raw, parsed = _properties(properties, properties_file)
    if parsed is None:
        raise click.UsageError("give --properties, --properties-file or --definition with what to change")
    _rolled_out(name, _service().update(name, raw, parsed))


def _redefine(name: str, definition: str, dry_run: bool) -> None:
    result = _service().redefine(name, definition, dry_run=dry_run)
    if result.dropped_properties:
        _echo(f"deployment properties dropped (no such app in the new definition): "
              f"{', '.join(result.dropped_properties)}")
    if result.rollout is not None:
        _rolled_out(name, result.rollout)
        return
    for line in result.diff.lines():
        _echo(line)
    _echo(f"dry run: stream {name} is unchanged" if dry_run
          else f"stream {name} is not deployed: its definition is changed, nothing restarted")


@stream.command("rollback")
@click.argument("name")
@click.option("--release", "number", type=click.IntRange(1), help="[default: the release before the current one]")
def rollback(name: str, number: int | None) -> None:
    """Run an earlier release's manifest again, as a new release."""
    _rolled_out(name, _service().rollback(name, number))


@stream.command("scale")
@click.argument("name")
@click.argument("app")
@click.option("--count", required=True, type=click.IntRange(1), help="Instances of APP.")
def scale(name: str, app: str, count: int) -> None:
    """Run COUNT instances of APP (a label of the stream)."""
    _rolled_out(name, _service().scale(name, app, count))


@stream.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--partial", is_flag=True, help="Also create streams whose apps all map but some options or "
                                              "deployment properties do not (those are left out, and listed).")
@click.option("--dry-run", is_flag=True, help="Map, check and report; create nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def import_(file: Path, partial: bool, dry_run: bool, as_json: bool) -> int:
    """Create the streams of an SCDF export: the JSON of SCDF's GET /streams/definitions, or a file of
    `name = definition` lines. SCDF's apps and options map to tuneflow's where there is a counterpart (mongodb →
    mongo, server.port → port, …), and deployment properties that mean the same here are kept. Every stream is
    reported with what could not be mapped; only fully mapped streams are created unless --partial is given.
    Exits 1 when a stream was left out.

    \b
    Examples:
      curl -s http://scdf:9393/streams/definitions?size=1000 > streams.json
      tuneflow stream import streams.json --dry-run
      tuneflow stream import streams.json --partial
    """
    from streams.scdf.files import read_export
    from streams.scdf.importer import LEFT_OUT, import_streams, summary

    streams, warnings = read_export(file)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    results = import_streams(_service(), streams, partial=partial, dry_run=dry_run)
    if as_json:
        _echo_json({"streams": [result.to_json() for result in results], "dry_run": dry_run,
                    "summary": summary(results, dry_run)})
    else:
        for result in results:
            for line in result.lines():
                _echo(line)
        _echo(summary(results, dry_run))
    return 1 if any(result.status == LEFT_OUT for result in results) else 0


@stream.command("export")
@click.argument("names", nargs=-1, required=True)
@click.option("--format", "form", type=click.Choice(["scdf", "tuneflow"]), default="scdf", show_default=True,
              help="scdf: the JSON of SCDF's GET /streams/definitions, apps and options in SCDF's names; "
                   "tuneflow: `name = definition` lines, as `stream import` reads them.")
def export(names: tuple[str, ...], form: str) -> None:
    """Write streams for SCDF (or for another tuneflow) to standard output; what has no SCDF counterpart is
    written as it is and named on standard error.

    \b
    Examples:
      tuneflow stream export tracks audit > streams.json
      tuneflow stream export tracks --format tuneflow > streams.txt
    """
    from streams.scdf.export import scdf_definition, scdf_properties
    from streams.scdf.files import definition_lines, scdf_document

    service = _service()
    definitions = service.definitions()
    records = [service.state.get_stream(name) for name in names]
    if form == "tuneflow":
        _echo(definition_lines([(record.name, record.canonical) for record in records]).rstrip("\n"))
        return
    entries = []
    for record in records:
        resolved = check(definitions[record.name], definitions, service.registry.catalog()).definition
        text, notes = scdf_definition(resolved)
        for note in notes:
            click.echo(f"note: stream {record.name}: {note}", err=True)
        entry: dict[str, object] = {
            "name": record.name, "dslText": text, "originalDslText": text, "status": "undeployed",
            "description": record.description or "",
            "statusDescription": "The app or group is known to the system, but is not currently deployed"}
        if record.deployment_properties:
            entry["deploymentProperties"] = scdf_properties(dict(record.deployment_properties), resolved)
        entries.append(entry)
    _echo_json(scdf_document(entries))
