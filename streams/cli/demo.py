"""`tuneflow demo`: the main job on embedded defaults — a legacy catalog moved into a document store, verified."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import click

from streams import settings
from streams.binders.factory import create_binder
from streams.catalog.dburl import make_engine
from streams.catalog.generator import generate_catalog
from streams.migration.verify import verify_tracks
from streams.platform.run import EmbeddedRun, RunResult
from streams.registry import Registry
from streams.state import open_state
from streams.stores.embedded import EmbeddedStore


@click.command("demo")
@click.option("--tracks", default=5000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Size of the synthetic legacy catalog.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo's legacy database and store live [default: $TUNEFLOW_HOME/demo].")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 50_000),
              help="Tracks per read and per bulk write.")
def demo(tracks: int, workdir: Path | None, batch_size: int) -> None:
    """Generate a legacy catalog in SQLite, move it into the embedded store with a stream, verify every document."""
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

    store_path = workdir / "store"
    definition = f"jdbc --url={legacy_url} | normalize | mongo --uri=embedded://{store_path}"
    click.echo("2/3 moving the tracks into catalog.tracks of the embedded store with the stream")
    click.echo(f'    tuneflow run "{definition}"')
    result = _run_stream(definition, tracks, batch_size, workdir / "dead-letters")
    sink = result.totals[-1]
    click.echo(f"    read {result.totals[0].records_out:,}, written {sink.records_out:,}, "
               f"dead letters {sum(t.dead_letters for t in result.totals):,}")
    for topic, path in result.dead_letter_files.items():
        click.echo(f"    dead letters of {topic}: {path}")

    engine = make_engine(legacy_url)
    store = EmbeddedStore(store_path)
    try:
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


def _run_stream(definition: str, tracks: int, batch_size: int, dlq_dir: Path) -> RunResult:
    """The stream on the memory binder, to its end, with a progress bar over what the sink has written."""
    embedded = EmbeddedRun(name="demo", definition=definition, binder=create_binder("memory"),
                           registry=Registry(open_state()), batch_size=batch_size, dlq_dir=dlq_dir)
    embedded.start()
    with click.progressbar(length=tracks, label="    stream", file=click.get_text_stream("stderr")) as bar:
        shown = [0]

        def tick() -> None:
            totals = embedded.deployer.totals()  # a track is done once written by the sink or dead-lettered
            done = min(tracks, totals[-1].records_out + sum(t.dead_letters for t in totals))
            bar.update(done - shown[0])
            shown[0] = done

        result = embedded.wait(threading.Event(), on_tick=tick)
        bar.update(tracks - shown[0])
    return result


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{table} {count:,}" for table, count in counts.items())
