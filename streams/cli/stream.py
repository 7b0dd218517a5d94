"""`tuneflow stream …`: stream definitions. `validate` checks a definition without deploying anything."""

from __future__ import annotations

import click
import orjson

from streams.dag import check
from streams.dsl import check_stream_name, parse


@click.group("stream")
def stream() -> None:
    """Streams: DSL definitions of Source | Processor | Sink apps wired by Kafka topics."""


@stream.command("validate")
@click.argument("name")
@click.option("--definition", required=True,
              help='The stream in the DSL, e.g. "kafka --topic=raw | normalize | mongo"')
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report: apps, topics, fan-in and fan-out.")
def validate(name: str, definition: str, as_json: bool) -> None:
    """Parse and check a definition: apps known and in place, options valid, labels unique.

    \b
    Example:
      tuneflow stream validate t1 --definition "kafka --topic=raw | normalize | mongo"
    """
    check_stream_name(name)
    report = check(parse(name, definition))
    if as_json:
        click.echo(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"stream {name}: valid")
    click.echo(f"  {report.to_json()['definition']}")
    for app in report.apps:
        inputs = ", ".join(app.inputs) or "-"
        outputs = ", ".join(app.outputs) or "-"
        click.echo(f"  {app.label:<14} {app.kind:<10} {app.app:<12} in: {inputs}  out: {outputs}")
    for destination in report.destinations.values():
        click.echo(f"  :{destination.name:<13} writers: {', '.join(destination.writers) or '-'}  "
                   f"readers: {', '.join(destination.readers) or '-'}")
