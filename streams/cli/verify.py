"""`tuneflow verify`: the target holds exactly the documents the source gives through the template."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy import func, select

from streams.catalog.dburl import mask_password
from streams.cli.errors import EXIT_FAILURE
from streams.cli.migration_options import collection_names, source_and_target
from streams.cli.progress import Progress
from streams.migration.source import load_bound, source_errors
from streams.migration.verify import CollectionDiff, verify_collection
from streams.stores.base import checked_name
from streams.stores.factory import open_store


@click.command("verify")
@source_and_target
@click.option("--chunk-rows", default=5000, show_default=True, type=click.IntRange(2, 10_000_000),
              help="Source rows per hashed key range.")
@click.option("--sample", default=10, show_default=True, type=click.IntRange(0, 10_000),
              help="How many differences to show with a field-level diff.")
@click.option("--since", type=click.IntRange(0), default=None, metavar="VERSION",
              help="Re-check only the target documents written above this version (a CDC catch-up).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def verify(source: str, target: str, template_path: str, collections: tuple[str, ...],
           database: str, chunk_rows: int, sample: int, since: int | None, as_json: bool) -> int:
    """Compare SOURCE (through the template) with TARGET by key-range hashes; name missing, extra, different keys.

    Exit 0 when they match, 1 on any difference, 2 on bad input.
    """
    checked_name("database", database)
    engine, bound = load_bound(template_path, source, collection_names(collections))
    store = open_store(target, database)
    diffs: list[CollectionDiff] = []
    try:
        with source_errors(source):
            with engine.connect() as conn:
                total = sum(conn.execute(select(func.count()).select_from(reader.key_column.table)).scalar_one()
                            for reader in bound.readers.values())
            with Progress("verify", total) as progress:
                for collection in bound.collections:
                    diffs.append(verify_collection(engine, bound, store, collection.name, chunk_rows=chunk_rows,
                                                   sample=sample, since=since, on_rows=progress.update))
    finally:
        store.close()
        engine.dispose()
    ok = all(diff.ok for diff in diffs)
    if as_json:
        click.echo(json.dumps({"ok": ok, "source": mask_password(source), "target": target, "database": database,
                               "collections": [_as_json(diff) for diff in diffs]}, indent=2, default=str))
    else:
        for diff in diffs:
            click.echo(_text(diff))
        click.echo("OK — the target matches the source" if ok else "DIFFERENT — see above")
    return 0 if ok else EXIT_FAILURE


def _as_json(diff: CollectionDiff) -> dict[str, Any]:
    return {
        "collection": diff.collection, "ok": diff.ok, "source_documents": diff.source_documents,
        "target_documents": diff.target_documents, "missing": diff.missing, "extra": diff.extra,
        "different": diff.different, "rejected": diff.rejected, "ranges": diff.ranges,
        "ranges_bisected": diff.ranges_bisected, "keys": diff.keys,
        "samples": [{"key": s.key, "kind": s.kind, "fields": s.fields} for s in diff.samples],
    }


def _text(diff: CollectionDiff) -> str:
    lines = [f"{diff.collection}: source {diff.source_documents:,}, target {diff.target_documents:,} — "
             f"missing {diff.missing:,}, extra {diff.extra:,}, different {diff.different:,}"
             + (f", rejected by the template {diff.rejected:,}" if diff.rejected else "")
             + f" ({diff.ranges:,} ranges, {diff.ranges_bisected:,} bisected)"]
    for sample in diff.samples:
        lines.append(f"  {sample.kind} {sample.key!r}")
        for item in sample.fields:
            lines.append(f"    {item['path']}: source {item['source']!r} ≠ target {item['target']!r}")
    return "\n".join(lines)
