"""Debezium's PostgreSQL connector (embedded, pgoutput, `pydbzengine`) delivering a slot's changes to a Python
handler that counts them: per table and op, and the order-free key checksum `benchmarks.cdc_postgres` compares.

Reads an existing slot and publication from the slot's position (`snapshot.mode=no_data`), stops once it has seen
`TF_DBZ_CHANGES` changes, and writes its result as JSON to `TF_DBZ_RESULT`. Run as its own process:

    TF_DBZ_URL=postgresql://… TF_DBZ_SLOT=s TF_DBZ_TABLES=track,album TF_DBZ_CHANGES=200000 \\
    TF_DBZ_RESULT=/tmp/r.json TF_DBZ_WORKDIR=/tmp/dbz python -m benchmarks.peers.debezium_pg
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from pydbzengine import BasePythonChangeHandler, ChangeEvent, DebeziumJsonEngine
from sqlalchemy.engine import make_url

from benchmarks.cdc_postgres import Tally
from streams.catalog.dburl import to_sqlalchemy_url


class Counting(BasePythonChangeHandler):
    def __init__(self, wanted: int) -> None:
        self.tally = Tally()
        self.wanted = wanted
        self.first: float | None = None
        self.last = 0.0
        self.in_handler = 0.0  # of the time between first and last, what the Python handler itself took
        self.done = threading.Event()

    def handleJsonBatch(self, records: list[ChangeEvent]) -> None:  # the Java callback's name
        started = time.perf_counter()
        if self.first is None:
            self.first = started
        for record in records:
            value = record.value()
            if value is None:
                continue
            change = orjson.loads(str(value))
            self.tally.add(change["source"]["table"], change["op"], orjson.loads(str(record.key())))
        self.last = time.perf_counter()
        self.in_handler += self.last - started
        if sum(self.tally.counts.values()) >= self.wanted:
            self.done.set()


def properties(url: str, slot: str, tables: list[str], workdir: Path) -> dict[str, str]:
    parsed = make_url(to_sqlalchemy_url(url))
    return {
        "name": "tf-bench-debezium",
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "plugin.name": "pgoutput",
        "slot.name": slot,
        "publication.name": slot,
        "publication.autocreate.mode": "disabled",
        "snapshot.mode": "no_data",
        "database.hostname": parsed.host or "127.0.0.1",
        "database.port": str(parsed.port or 5432),
        "database.user": parsed.username or os.environ.get("PGUSER", "postgres"),
        "database.password": parsed.password or os.environ.get("PGPASSWORD", ""),
        "database.dbname": parsed.database or "",
        "topic.prefix": "tfbench",
        "table.include.list": ",".join(f"public.{t}" for t in tables),
        "tombstones.on.delete": "false",
        "converter.schemas.enable": "false",
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(workdir / "offsets.dat"),
        "offset.flush.interval.ms": "1000",
        "max.batch.size": "2048",
        "max.queue.size": "8192",
        "poll.interval.ms": "50",
    }


def main() -> int:
    env = os.environ
    workdir = Path(env["TF_DBZ_WORKDIR"])
    workdir.mkdir(parents=True, exist_ok=True)
    handler = Counting(int(env["TF_DBZ_CHANGES"]))
    engine = DebeziumJsonEngine(properties=properties(env["TF_DBZ_URL"], env["TF_DBZ_SLOT"],
                                                      env["TF_DBZ_TABLES"].split(","), workdir), handler=handler)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            engine.run()
        except BaseException as exc:
            failure.append(exc)
        finally:
            handler.done.set()

    threading.Thread(target=run, daemon=True).start()
    handler.done.wait(float(env.get("TF_DBZ_TIMEOUT_S", "900")))
    engine.close()
    result: dict[str, Any] = handler.tally.to_json()
    seconds = handler.last - handler.first if handler.first is not None else 0.0
    result |= {"seconds": round(seconds, 3), "median": round(result["changes"] / seconds, 1) if seconds else 0.0,
               "timed_by": "handler wall clock, first batch to last",
               "handler_seconds": round(handler.in_handler, 3),
               "error": repr(failure[0]) if failure else None}
    Path(env["TF_DBZ_RESULT"]).write_bytes(orjson.dumps(result))
    os._exit(0)  # the JVM's non-daemon threads would keep the process alive


if __name__ == "__main__":
    main()
