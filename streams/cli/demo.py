"""`tuneflow demo`: the main job on embedded defaults — a legacy catalog moved into a document store, verified."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from streams import settings
from streams.catalog.generator import generate_catalog
from streams.cli.migrate import start
from streams.cli.verify import verify
from streams.migration.template import catalog_template_path


@click.command("demo")
@click.option("--tracks", default=5000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Size of the synthetic legacy catalog.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo's legacy database and store live [default: $TUNEFLOW_HOME/demo].")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(2, 50_000),
              help="Root rows per key-range chunk, read and written at once.")
@click.option("--template", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The migration template [default: deploy/templates/catalog.yaml].")
def demo(tracks: int, workdir: Path | None, batch_size: int, template: str | None) -> None:
    """Generate a legacy catalog in SQLite, move it into the embedded store through a template, verify it."""
    workdir = workdir or settings.home() / "demo"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    legacy_url = f"sqlite:///{workdir / 'legacy.sqlite'}"

    started = time.perf_counter()
    click.echo(f"1/3 generating {tracks:,} legacy tracks into {legacy_url}")
    with click.progressbar(length=tracks, label="    generate", file=click.get_text_stream("stderr")) as bar:
        generated = generate_catalog(legacy_url, tracks=tracks, mode="replace", progress=bar.update)
    click.echo(f"    {_counts(generated.counts)}")

    store = f"embedded://{workdir / 'store'}"
    template_path = str(template or catalog_template_path())
    click.echo(f"2/3 moving the catalog into the embedded store through the template {template_path}")
    click.echo(f"    tuneflow migrate start --source {legacy_url} --target {store} --template {template_path}")
    context = click.get_current_context()
    context.invoke(start, source=legacy_url, target=store, template_path=template_path, collections=(),
                   database="catalog", parallel=1, chunk_rows=batch_size, throttle=None)

    click.echo("3/3 verifying every document against the legacy tables by key-range hashes")
    click.echo(f"    tuneflow verify --source {legacy_url} --target {store} --template {template_path}")
    code = context.invoke(verify, source=legacy_url, target=store, template_path=template_path, collections=(),
                          database="catalog", chunk_rows=batch_size, sample=10, since=None, throttle=None,
                          as_json=False)
    seconds = time.perf_counter() - started
    if code:
        raise click.ClickException("the store does not match the legacy catalog")
    click.echo(f"OK — the store matches the legacy catalog ({seconds:.1f}s). Files: {workdir}")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{table} {count:,}" for table, count in counts.items())
