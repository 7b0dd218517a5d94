"""Turns user mistakes into a message and an exit code instead of a traceback."""

from __future__ import annotations

import sys

import click

from streams.errors import ConfigError, ServiceUnavailableError, TuneflowError
from streams.masking import mask_secrets

EXIT_USAGE = 2
EXIT_SERVICE = 3
EXIT_FAILURE = 1


def run_cli(group: click.Group) -> None:
    try:
        result = group.main(standalone_mode=False, prog_name="tuneflow")
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"Error: {mask_secrets(str(exc))}", err=True)
        sys.exit(EXIT_USAGE)
    except ServiceUnavailableError as exc:
        click.echo(f"Error: {mask_secrets(str(exc))}", err=True)
        sys.exit(EXIT_SERVICE)
    except TuneflowError as exc:
        click.echo(f"Error: {mask_secrets(str(exc))}", err=True)
        sys.exit(EXIT_FAILURE)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    else:
        sys.exit(result if isinstance(result, int) else 0)
