"""The options `migrate start` and `verify` share: where from, where to, through which template."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

SOURCE_HELP = "The source database: postgresql://…, mariadb://… or sqlite:///path."
TARGET_HELP = "The document store: mongodb://… (MongoDB, FerretDB) or embedded:///dir."

F = TypeVar("F", bound=Callable[..., Any])


def source_and_target(command: F) -> F:
    """--source, --target, --template, --collections, --database."""
    for option in reversed([
        click.option("--source", required=True, metavar="URL", help=SOURCE_HELP),
        click.option("--target", required=True, metavar="URI", help=TARGET_HELP),
        click.option("--template", "template_path", required=True, type=click.Path(dir_okay=False),
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
