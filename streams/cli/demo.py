"""`tuneflow demo`: the main job on embedded defaults — a legacy catalog moved into a document store, verified."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from streams import settings
from streams.catalog.dburl import make_engine
from streams.catalog.generator import generate_catalog
from streams.migration.backfill import backfill_tracks
from streams.migration.verify import verify_tracks
from streams.stores.embedded import EmbeddedStore


@click.command("demo")
@click.option("--tracks", default=5000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Size of the synthetic legacy catalog.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo's legacy database and store live [default: $TUNEFLOW_HOME/demo].")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 50_000))
def demo(tracks: int, workdir: Path | None, batch_size: int) -> None:
    """Generate a legacy catalog in SQLite, backfill it into the embedded store, verify every document."""
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

    engine = make_engine(legacy_url)
    store = EmbeddedStore(workdir / "store")
    try:
        click.echo("2/3 backfilling catalog.tracks in the embedded store")
        with click.progressbar(length=tracks, label="    backfill", file=click.get_text_stream("stderr")) as bar:
            backfill = backfill_tracks(engine, store, batch_size=batch_size, progress=bar.update)
        click.echo(f"    read {backfill.read:,}, written {backfill.written:,}, rejected {len(backfill.rejected):,}")
        for track_id, reason in list(backfill.rejected.items())[:5]:
            click.echo(f"    rejected track {track_id}: {reason}")

        click.echo("3/3 verifying every document against the legacy tables")
        with click.progressbar(length=tracks, label="    verify", file=click.get_text_stream("stderr")) as bar:
            report = verify_tracks(engine, store, batch_size=batch_size, progress=bar.update)
    finally:
        store.close()
        engine.dispose()

    seconds = time.perf_counter() - started
    click.echo(
        f"verified {report.source_rows:,} source tracks against {report.store_documents:,} documents: "
        f"missing {len(report.missing)}, different {len(report.different)}, extra {report.extra} "
        f"({seconds:.1f}s)"
    )
    if not report.ok:
        raise click.ClickException("the store does not match the legacy catalog")
    click.echo(f"OK — the store matches the legacy catalog. Files: {workdir}")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{table} {count:,}" for table, count in counts.items())
