"""The options `migrate start` and `verify` share: where from, where to, through which template."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from streams.errors import ConfigError
from streams.masking import has_masked_password, restore_password

SOURCE_HELP = "The source database: postgresql://…, mariadb://… or sqlite:///path."
TARGET_HELP = "The document store: mongodb://… (MongoDB, FerretDB) or embedded:///dir."

F = TypeVar("F", bound=Callable[..., Any])


def source_and_target(command: F | None = None, *, required: bool = True) -> Any:
    """--source, --target, --template, --collections, --database (`required=False`: the command checks them)."""
    if command is None:
        return lambda decorated: source_and_target(decorated, required=required)
    for option in reversed([
        click.option("--source", required=required, metavar="URL", help=SOURCE_HELP),
        click.option("--target", required=required, metavar="URI", help=TARGET_HELP),
        click.option("--template", "template_path", required=required, type=click.Path(dir_okay=False),
                     help="The migration template (YAML)."),
        click.option("--collections", multiple=True, metavar="NAMES",
                     help="Only these collections of the template (comma-separated)."),
        click.option("--database", default="catalog", show_default=True, help="The target database."),
    ]):
        command = option(command)
    return command


def collection_names(value: tuple[str, ...]) -> list[str] | None:
    names = [name.strip() for item in value for name in item.split(",") if name.strip()]
    return names or None


def password_options(command: F) -> F:
    """--source-password, --target-password: what a stored run's URLs lost, to resume it."""
    for option in reversed([
        click.option("--source-password", envvar="TUNEFLOW_SOURCE_PASSWORD", default=None, metavar="PASSWORD",
                     help="The source's password (env TUNEFLOW_SOURCE_PASSWORD; asked for on a terminal)."),
        click.option("--target-password", envvar="TUNEFLOW_TARGET_PASSWORD", default=None, metavar="PASSWORD",
                     help="The target's password (env TUNEFLOW_TARGET_PASSWORD; asked for on a terminal)."),
    ]):
        command = option(command)
    return command


def with_password(stored: str, password: str | None, side: str) -> str:
    """A run's stored URL (kept without its password) made usable: the password given, else asked on a terminal."""
    if not has_masked_password(stored):
        return stored
    if password is None:
        if not click.get_text_stream("stdin").isatty():
            raise ConfigError(f"the {side} {stored} needs its password, which runs do not keep: give it with "
                              f"--{side}-password or TUNEFLOW_{side.upper()}_PASSWORD")
        password = click.prompt(f"Password of the {side} {stored}", hide_input=True, err=True)
    return restore_password(stored, str(password))
