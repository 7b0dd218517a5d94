"""`tuneflow schema NAME`: the JSON Schema of a catalog document or change event."""

from __future__ import annotations

import click
import orjson

from streams.catalog.models import DOCUMENT_MODELS


@click.command("schema")
@click.argument("name", type=click.Choice(sorted(DOCUMENT_MODELS)))
def schema(name: str) -> None:
    """Print the JSON Schema of NAME (track, track-delete, album, artist, change)."""
    model = DOCUMENT_MODELS[name]
    document = model.model_json_schema(by_alias=True, mode="validation")
    click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
