"""`tuneflow template …`: check a migration template against a live source, preview the document of one key."""

from __future__ import annotations

import click
import orjson

from streams.catalog.dburl import mask_password
from streams.cli.migration_options import SOURCE_HELP
from streams.errors import ConfigError
from streams.migration.source import load_bound, source_errors, typed_key
from streams.migration.template_reader import KeyRange


@click.group("template")
def template() -> None:
    """Migration templates: which tables and columns become which documents."""


@template.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--source", "url", required=True, metavar="URL", help=SOURCE_HELP)
def check(file: str, url: str) -> None:
    """Check FILE against the schema at URL: every table and column it reads exists (else exit 2, naming it)."""
    engine, bound = load_bound(file, url)
    engine.dispose()
    for collection in bound.collections:
        click.echo(f"{collection.name}: from {collection.root.table} by {collection.key}")
    click.echo(f"OK — {file} matches the schema at {mask_password(url)}")


@template.command("preview")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--source", "url", required=True, metavar="URL", help=SOURCE_HELP)
@click.option("--key", required=True, help="The key of the document to build.")
@click.option("--collection", default=None, help="Which collection of the template [default: the first].")
def preview(file: str, url: str, key: str, collection: str | None) -> None:
    """Print the document KEY produces (as JSON), read from the source through the template."""
    engine, bound = load_bound(file, url, [collection] if collection else None)
    try:
        reader = next(iter(bound.readers.values()))
        with source_errors(url), engine.connect() as conn:
            found = list(reader.read(conn, KeyRange(keys=(typed_key(reader, key),))))
    finally:
        engine.dispose()
    if not found:
        raise ConfigError(f"no row of {reader.collection.root.table} has {reader.collection.key} = {key}")
    click.echo(orjson.dumps(found[0].document, option=orjson.OPT_INDENT_2).decode())
