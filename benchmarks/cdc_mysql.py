"""The `cdc-mysql` source under load, as its own OS process, beside `mysql-replication`'s raw decode rate on the
same stretch of binlog, measured in the same run.

Workload: ROWS track rows inserted, then each updated once (both in statements and transactions of TX_ROWS rows:
each statement costs the decoder a table-map event, which `mysql-replication` decodes slowly), on a scratch
database of the stack's MariaDB: 2 × ROWS row changes between two binlog positions. The ceiling reads that stretch
with `BinLogStreamReader` (blocking, only the scratch database's row events) and does nothing with the rows. The
source is started at the stretch's first position (written to its offsets topic, as a restart would find it) and
timed by the CreateTime stamps of the changes it wrote to Kafka, each acknowledged before it moves on. Peak RSS from
/proc once it is over. Other engineers' writes to the same server land in the same stretch: both read past them.

`python -m benchmarks.cdc_mysql` runs this part alone and prints its JSON.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent
from sqlalchemy import create_engine

from benchmarks.apps import RSS_LIMIT_MB, _Topics, _written_run
from benchmarks.harness import REPEATS, machine, measure
from streams.catalog.dburl import to_sqlalchemy_url
from streams.catalog.legacy import create_legacy_schema
from streams.cdc.mysql import _Connection
from streams.cdc.positions import POSITION_KEY, positions_topic
from tests.integration.pipeline import produce
from tests.integration.processes import AppProcess
from tests.integration.services import scratch_database

ROWS = int(os.environ.get("TUNEFLOW_BENCH_CDC_ROWS", "50000"))
TX_ROWS = 500
TARGET_PER_S = 10_000
CEILING = "mysql-replication BinLogStreamReader decoding the same binlog stretch, rows discarded"


def _write_workload(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Insert ROWS tracks and update each once; the binlog positions before and after."""
    db = _Connection.from_url(url)
    connection = pymysql.connect(host=db.host, port=db.port, user=db.user, password=db.password,
                                 database=db.schema, charset="utf8mb4")
    try:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO album VALUES (1, 'Bench album 🎵', 'ALBUM', '2024-02-20', 'EDAM', NOW(6))")
            connection.commit()
            start = _binlog_end(cursor)
            for first in range(1, ROWS + 1, TX_ROWS):
                rows = [(i, 1, f"Track {i} 가사 😀", (i % 30) + 1, 180_000 + i, i % 2) for i in
                        range(first, min(first + TX_ROWS, ROWS + 1))]
                values = ", ".join(["(%s, %s, %s, %s, %s, %s, NOW(6))"] * len(rows))  # one statement, one row event
                cursor.execute("INSERT INTO track (track_id, album_id, title, track_no, duration_ms, explicit, "
                               f"updated_at) VALUES {values}", [v for row in rows for v in row])
                connection.commit()
            for first in range(1, ROWS + 1, TX_ROWS):
                cursor.execute("UPDATE track SET title = CONCAT(title, ' ·'), duration_ms = duration_ms + 1, "
                               "explicit = NOT explicit WHERE track_id BETWEEN %s AND %s", (first, first + TX_ROWS - 1))
                connection.commit()
            end = _binlog_end(cursor)
    finally:
        connection.close()
    return start, end


def _binlog_end(cursor: Any) -> dict[str, Any]:
    cursor.execute("SHOW MASTER STATUS")
    file, pos = cursor.fetchone()[:2]
    return {"file": file, "pos": int(pos), "gtid": None}


def raw_decode(url: str, start: dict[str, Any], end: dict[str, Any]) -> dict[str, Any]:
    db = _Connection.from_url(url)
    seen = 0

    def run() -> None:
        nonlocal seen
        reader = BinLogStreamReader(connection_settings=db.settings(), server_id=random.randint(2_000_000_000,
                                    2_100_000_000), blocking=True, resume_stream=True, log_file=start["file"],
                                    log_pos=start["pos"], end_log_pos=end["pos"], only_schemas=[db.schema],
                                    only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
                                    enable_logging=False)
        seen = 0
        try:
            for event in reader:  # ends at `end_log_pos` (the workload stays in one binlog file)
                seen += len(event.rows)
        finally:
            reader.close()

    result = measure(CEILING, 2 * ROWS, run, repeats=1)
    if seen != 2 * ROWS:
        raise RuntimeError(f"the raw reader saw {seen} row changes, not {2 * ROWS}")
    return result


def run_all(env: dict[str, str], workdir: Path) -> dict[str, Any]:
    print("cdc-mysql:", flush=True)
    bootstrap = env["TUNEFLOW_KAFKA_BOOTSTRAP"]
    topics = _Topics(bootstrap)
    with scratch_database(env["TUNEFLOW_MYSQL_URL"], prefix="tf_bench_cdc") as url:
        engine = create_engine(to_sqlalchemy_url(url))
        create_legacy_schema(engine)
        engine.dispose()
        start, end = _write_workload(url)
        if start["file"] != end["file"]:
            raise RuntimeError("the binlog rotated during the workload; run again")
        ceilings: list[dict[str, Any]] = []
        runs: list[dict[str, Any]] = []
        try:
            ceilings.append(raw_decode(url, start, end))
            for attempt in range(REPEATS):
                stream = f"tfbench_cdc_{uuid.uuid4().hex[:8]}"
                topics.create(f"{stream}.cdc", positions_topic(stream, "cdc"))
                produce(bootstrap, positions_topic(stream, "cdc"), [(POSITION_KEY, orjson.dumps(start), None)])
                process = AppProcess(["cdc-mysql", "--stream", stream, "--label", "cdc", "--", f"--url={url}",
                                      "--tables=track"], workdir, f"cdc-mysql-{attempt}")
                run = _written_run(process, bootstrap, f"{stream}.cdc", 2 * ROWS, timeout_s=300)
                runs.append(run)
                print(f"  cdc-mysql to Kafka (acknowledged)                 {run['median']:>12,.0f} records/s  "
                      f"rss {run['peak_rss_mb']} MB", flush=True)
                ceilings.append(raw_decode(url, start, end))
        finally:
            topics.delete_all()
    rates = [r["median"] for r in runs]
    ceiling_rates = [c["median"] for c in ceilings]
    ratios = [round(rate / statistics.mean(ceiling_rates[i:i + 2]), 3) for i, rate in enumerate(rates)]
    rss = max(r["peak_rss_mb"] for r in runs)
    median = statistics.median(rates)
    return {
        "name": "cdc-mysql row changes delivered to Kafka (one instance, MariaDB 10.11 binlog)",
        "unit": "records/s", "items": 2 * ROWS, "transaction_rows": TX_ROWS,
        "median": round(median, 1), "runs": rates, "target_per_s": TARGET_PER_S, "meets_target": median >= TARGET_PER_S,
        "ceiling": CEILING, "ceiling_median": round(statistics.median(ceiling_rates), 1), "ceiling_runs": ceiling_rates,
        "ratio": round(statistics.median(ratios), 3), "ratio_runs": ratios,
        "peak_rss_mb": rss, "rss_limit_mb": RSS_LIMIT_MB, "rss_within_limit": rss <= RSS_LIMIT_MB,
    }


def main() -> int:
    missing = [n for n in ("TUNEFLOW_KAFKA_BOOTSTRAP", "TUNEFLOW_MYSQL_URL") if not os.environ.get(n)]
    if missing:
        print(f"set {', '.join(missing)} (e.g. `eval \"$(deploy/local/stack env)\"`)", file=sys.stderr)
        return 2
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tf-bench-cdc-mysql-") as workdir:
        result = run_all(dict(os.environ), Path(workdir))
    print(orjson.dumps({"machine": machine(), "cdc_mysql": result, "seconds": round(time.time() - started)},
                       option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
