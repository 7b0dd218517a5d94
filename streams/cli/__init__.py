"""The `tuneflow` command line: one click group, one module per verb family."""

from __future__ import annotations

import click

from streams import __version__
from streams.cli.errors import run_cli


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tuneflow")
def cli() -> None:
    """tuneflow — Source | Processor | Sink streams for music-catalog ingestion."""


def _register_commands() -> None:
    from streams.cli.app import app
    from streams.cli.catalog import catalog
    from streams.cli.demo import demo
    from streams.cli.migrate import migrate
    from streams.cli.run import run
    from streams.cli.schema import schema
    from streams.cli.stream import stream
    from streams.cli.switch import switch
    from streams.cli.template import template
    from streams.cli.verify import verify

    for command in (app, catalog, demo, migrate, run, schema, stream, switch, template, verify):
        cli.add_command(command)


_register_commands()


def main() -> None:
    run_cli(cli)
