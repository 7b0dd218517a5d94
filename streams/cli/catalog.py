"""`tuneflow catalog …`: the legacy relational catalog, starting with a synthetic one of any size."""

from __future__ import annotations

import sys
from typing import cast, get_args

import click

from streams.catalog.dburl import mask_password, to_sqlalchemy_url
from streams.catalog.generator import Mode, generate_catalog


@click.group("catalog")
def catalog() -> None:
    """The legacy relational catalog (artist, album, track, credits, genres)."""


@catalog.command("generate")
@click.option("--tracks", required=True, type=click.IntRange(1), help="How many tracks to write.")
@click.option("--into", "url", required=True, metavar="URL",
              help="postgresql://…, mysql://…, mariadb://… or sqlite:///path.")
@click.option("--mode", type=click.Choice(get_args(Mode)), default="create", show_default=True,
              help="create: refuse tables holding rows; append: add after the highest ids; "
                   "replace: drop and recreate the tables.")
@click.option("--seed", default=42, show_default=True, type=int, help="Same seed, same catalog.")
@click.option("--chunk-size", default=10_000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Tracks per committed chunk (whole albums).")
def generate(tracks: int, url: str, mode: str, seed: int, chunk_size: int) -> None:
    """Write a realistic synthetic catalog (artists, albums, tracks, credits, genres) into the tables at URL.

    \b
    Example:
      tuneflow catalog generate --tracks 1000000 --into postgresql://tuneflow:tuneflow@127.0.0.1:5432/tuneflow
    """
    to_sqlalchemy_url(url)  # a wrong URL fails here, before any output
    where = mask_password(url)
    click.echo(f"generating {tracks:,} tracks into {where} (mode {mode}, seed {seed})", err=True)
    with click.progressbar(length=tracks, label="generate", file=sys.stderr) as bar:
        report = generate_catalog(url, tracks, mode=cast(Mode, mode), seed=seed, chunk_size=chunk_size,
                                  progress=bar.update)
    width = max(len(table) for table in report.counts)
    for table, count in report.counts.items():
        click.echo(f"{table:<{width}}  {count:>12,}")
    click.echo(f"{report.counts['track']:,} tracks in {report.seconds:.1f}s "
               f"({report.tracks_per_second:,.0f} tracks/s) into {where}")
