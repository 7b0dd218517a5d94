"""`make bench`: measure ceilings and tuneflow's own numbers in one run, write benchmarks/results/<time>.json."""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import orjson

from benchmarks import apps, cdc_mysql, cdc_postgres, ceilings, ferretdb_backends, http_source, migration
from benchmarks.harness import machine

RESULTS = Path(__file__).parent / "results"
REQUIRED = ("TUNEFLOW_KAFKA_BOOTSTRAP", "TUNEFLOW_MONGO_URI", "TUNEFLOW_PG_URL", "TUNEFLOW_MYSQL_URL")


def main() -> int:
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        print(f"missing {', '.join(missing)}: run `make bench`, or `eval \"$(deploy/local/stack env)\"` first",
              file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    env = dict(os.environ)
    measured_ceilings = ceilings.run_all(env)
    with tempfile.TemporaryDirectory(prefix="tf-bench-apps-") as workdir:
        app_results = apps.run_all(env, measured_ceilings, Path(workdir))
        http_results = http_source.run_all(env, Path(workdir))
        cdc_mysql_results = cdc_mysql.run_all(env, Path(workdir))
        cdc_results = cdc_postgres.run_all(env, Path(workdir))
    report = {
        "started_at": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "machine": machine(),
        "ceilings": measured_ceilings,
        "apps": app_results,
        "http": http_results,
        "cdc_mysql": cdc_mysql_results,
        "cdc_postgres": cdc_results,
        "ferretdb_backends": ferretdb_backends.run_all(env),
        "migration": migration.run_all(env),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    (RESULTS / "latest.json").write_bytes(path.read_bytes())
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
