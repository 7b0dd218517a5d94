"""`tuneflow demo`: the main job on embedded defaults, as one story.

A legacy catalog in SQLite moves into the embedded document store while a live writer keeps updating tracks over
HTTP (`http | normalize | dual-write`, in this process). The switch goes from `legacy` to writing both stores, the
backfill runs, `verify` proves the stores agree, reads flip to the document store, roll back, flip again, and a
final `verify` closes it. No service is needed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import httpx

from streams import settings
from streams.catalog.generator import generate_catalog
from streams.catalog.live_writer import LiveWriter
from streams.cli.migrate import start as migrate_start
from streams.cli.verify import verify as verify_command
from streams.migration.phases import Phase, routing
from streams.migration.template import catalog_template_path

MIGRATION = "demo"
STREAM = "demo"
POOL = 2000  # tracks the live writer edits


@click.command("demo")
@click.option("--tracks", default=50_000, show_default=True, type=click.IntRange(100, 1_000_000),
              help="Size of the synthetic legacy catalog.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo's legacy database, store and state live [default: $TUNEFLOW_HOME/demo].")
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(2, 50_000),
              help="Root rows per key-range chunk, read and written at once.")
@click.option("--writes-per-s", default=200, show_default=True, type=click.IntRange(1, 10_000),
              help="Track updates per second the live writer sends over HTTP.")
@click.option("--template", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The migration template [default: deploy/templates/catalog.yaml].")
def demo(tracks: int, workdir: Path | None, batch_size: int, writes_per_s: int, template: str | None) -> None:
    """Move a live legacy catalog into the document store, with dual-writes and the switch: no services needed."""
    workdir = workdir or settings.home() / "demo"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    with _demo_state(workdir):
        Story(workdir, tracks, batch_size, writes_per_s, str(template or catalog_template_path())).tell()


@contextmanager
def _demo_state(workdir: Path) -> Iterator[None]:
    """The demo keeps its platform state (switch, runs) in its own folder, not in the user's."""
    saved = os.environ.get("TUNEFLOW_DB_URL")
    os.environ["TUNEFLOW_DB_URL"] = f"sqlite:///{workdir / 'state.sqlite'}"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TUNEFLOW_DB_URL", None)
        else:
            os.environ["TUNEFLOW_DB_URL"] = saved


class Story:
    def __init__(self, workdir: Path, tracks: int, batch_size: int, writes_per_s: int, template: str) -> None:
        self.workdir, self.tracks, self.batch_size, self.template = workdir, tracks, batch_size, template
        self.writes_per_s = writes_per_s
        self.legacy = f"sqlite:///{workdir / 'legacy.sqlite'}"
        self.store = f"embedded://{workdir / 'store'}"
        self.token = secrets.token_urlsafe(24)
        self.port = _free_port()
        self.flips: list[str] = []
        self.verifies: list[str] = []

    def tell(self) -> None:
        from streams.cli.demo_stack import DemoStack

        started = time.perf_counter()
        _step(1, f"a legacy catalog of {self.tracks:,} tracks in SQLite ({self.legacy})")
        with click.progressbar(length=self.tracks, label="    generate", file=click.get_text_stream("stderr")) as bar:
            generated = generate_catalog(self.legacy, tracks=self.tracks, mode="replace", progress=bar.update)
        click.echo("    " + ", ".join(f"{table} {count:,}" for table, count in generated.counts.items()))

        token_file = self.workdir / "tokens"
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        definition = (f"http --port={self.port} --token-file='{token_file}' --migration={MIGRATION} "
                      f"--read-rdbms-url='{self.legacy}' --read-mongo-uri='{self.store}' --shadow-read-sample=0.5 "
                      f"| normalize | dual-write --migration={MIGRATION} --rdbms-url='{self.legacy}' "
                      f"--mongo-uri='{self.store}'")
        _step(2, "the live path: writers send track updates over HTTP; the switch starts at legacy (RDBMS only)")
        click.echo(f"    tuneflow run \"{definition.replace(self.token, '***')}\"")
        with DemoStack(STREAM, MIGRATION, definition) as stack:
            stack.wait_ready(f"http://127.0.0.1:{self.port}")
            writer = LiveWriter(f"http://127.0.0.1:{self.port}", self.token, self._pool(), rate_per_s=self.writes_per_s)
            writer.start()
            try:
                self._migrate_live(stack, writer)
            finally:
                writer.stop()
            stack.drain()
            _step(8, "the writer stops; the last writes drain; every acknowledged write checked; the final verify")
            self._check_ledger(writer)
            self._verify("final")
            summary = stack.summary()
        self._summary(writer, summary, time.perf_counter() - started)

    def _migrate_live(self, stack: Any, writer: LiveWriter) -> None:
        _step(3, "switch forward: every write now goes to the RDBMS (primary) and the document store (shadow)")
        self._flip(stack, Phase.DUAL_RDBMS_PRIMARY)

        _step(4, "backfill the document store from one snapshot of the legacy tables, while the writer writes")
        self._run(migrate_start, ["--source", self.legacy, "--target", self.store, "--template", self.template,
                                  "--parallel", "1", "--chunk-rows", str(self.batch_size)])

        _step(5, "pause the writer, let its writes drain, and verify both stores agree")
        writer.pause()
        stack.drain()
        self._verify("after the backfill")
        writer.resume()

        _step(6, "switch forward: the document store becomes primary for reads and writes (the gate checks first)")
        self._flip(stack, Phase.DUAL_MONGO_PRIMARY)
        self._read(stack, writer)
        time.sleep(2)

        _step(7, "roll back (never gated, nothing lost: the RDBMS was still written), then forward again")
        self._flip(stack, Phase.DUAL_RDBMS_PRIMARY)
        self._read(stack, writer)
        time.sleep(2)
        self._flip(stack, Phase.DUAL_MONGO_PRIMARY)
        self._read(stack, writer)
        time.sleep(1)

    def _check_ledger(self, writer: LiveWriter) -> None:
        """Each acknowledged write is in both stores at its latest version."""
        from sqlalchemy import create_engine

        from streams.migration.source import bind_template
        from streams.migration.template import load_template
        from streams.migration.template_reader import KeyRange
        from streams.stores.factory import open_store

        acked = writer.acknowledged
        keys = sorted(acked)
        store, engine = open_store(self.store, "catalog"), create_engine(self.legacy)
        wrong: list[str] = []
        try:
            with engine.connect() as conn:
                reader = bind_template(load_template(self.template), conn, ["tracks"]).readers["tracks"]
                for start in range(0, len(keys), 500):
                    chunk = keys[start:start + 500]
                    documents = store.get_many("tracks", chunk)
                    rows = {found.key: found.document for found in reader.read(conn, KeyRange(keys=tuple(chunk)))}
                    for key in chunk:
                        for where, held in (("document store", documents.get(key)), ("RDBMS", rows.get(key))):
                            if held is None or _instant(held["updated_at"]) != _instant(acked[key]):
                                wrong.append(f"track {key} in the {where}: "
                                             f"{None if held is None else held['updated_at']} ≠ {acked[key]}")
        finally:
            store.close()
            engine.dispose()
        if wrong:
            raise click.ClickException(f"{len(wrong)} acknowledged writes are not in both stores: {wrong[:5]}")
        click.echo(f"    {len(keys):,} tracks written live: each one in both stores at its last acknowledged version")

    def _pool(self) -> list[dict[str, Any]]:
        from sqlalchemy import create_engine

        from streams.migration.source import bind_template
        from streams.migration.template import load_template
        from streams.migration.template_reader import KeyRange

        engine = create_engine(self.legacy)
        try:
            with engine.connect() as conn:
                reader = bind_template(load_template(self.template), conn, ["tracks"]).readers["tracks"]
                pool = []
                for found in reader.read(conn, KeyRange()):
                    if found.document is not None:
                        pool.append(found.document)
                    if len(pool) >= POOL:
                        break
                return pool
        finally:
            engine.dispose()

    def _flip(self, stack: Any, target: Phase) -> None:
        move = stack.move(target)
        for check in move.change.gate or []:
            click.echo(f"    gate: {'ok ' if check['ok'] else 'NO '} {check['check']}: {check['detail']}")
        self.flips.append(f"{move.change.from_phase} → {move.change.to_phase}")
        click.echo(f"    switch {MIGRATION}: {move.change.from_phase} → {move.change.to_phase} "
                   f"(epoch {move.state.epoch}); writes: {routing(target).primary} first, reads: {move.state.reads}")

    def _read(self, stack: Any, writer: LiveWriter) -> None:
        key = writer.last_key or writer.documents[0]["_id"]
        answer = httpx.get(f"http://127.0.0.1:{self.port}/tracks/{key}",
                           headers={"Authorization": f"Bearer {self.token}"}, timeout=10)
        click.echo(f"    GET /tracks/{key} → {answer.status_code}, read from the "
                   f"{answer.headers.get('X-Tuneflow-Read-Store', '?')} store: \"{answer.json().get('title')}\"")

    def _verify(self, when: str) -> None:
        click.echo(f"    tuneflow verify --source {self.legacy} --target {self.store} --template {self.template} "
                   f"--migration {MIGRATION}")
        code = self._run(verify_command, ["--source", self.legacy, "--target", self.store, "--template",
                                          self.template, "--chunk-rows", str(self.batch_size),
                                          "--migration", MIGRATION])
        if code:
            raise click.ClickException(f"verify {when}: the stores differ")
        self.verifies.append(f"{when}: clean")

    @staticmethod
    def _run(command: click.Command, args: list[str]) -> int:
        result = command.main(args=args, standalone_mode=False)
        return int(result or 0)

    def _summary(self, writer: LiveWriter, stack_summary: dict[str, Any], seconds: float) -> None:
        counts = writer.counts
        click.echo("")
        click.echo(f"Done in {seconds:.0f}s. What happened:")
        click.echo(f"  - {self.tracks:,} legacy tracks moved into the document store by one snapshot backfill.")
        click.echo(f"  - A live writer sent {counts.accepted:,} track updates over HTTP while it ran "
                   f"({counts.rejected} rejected, {counts.refused} requests refused); every one acknowledged "
                   "is in both stores.")
        click.echo(f"  - The switch moved {len(self.flips)} times: {'; '.join(self.flips)}.")
        click.echo(f"  - Reads by the switch: {stack_summary['reads']}; shadow reads compared with the other store: "
                   f"{stack_summary['shadow']}; reads older than an earlier read of the same track: "
                   f"{counts.reads_back_in_time}.")
        click.echo(f"  - verify: {'; '.join(self.verifies)}.")
        click.echo(f"  - Files: {self.workdir} (legacy.sqlite, store/, state.sqlite). "
                   f"History: TUNEFLOW_DB_URL=sqlite:///{self.workdir / 'state.sqlite'} tuneflow switch history")


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _step(number: int, text: str) -> None:
    click.echo(f"{number}/8 {text}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

