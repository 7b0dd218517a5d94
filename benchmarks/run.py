"""`make bench`: measure ceilings and tuneflow's own numbers in one run, write benchmarks/results/<time>.json.

`make bench SECTIONS=apps,http` (TUNEFLOW_BENCH_SECTIONS) runs only those sections; `apps` brings the ceilings it
is compared with. A partial report says which sections it holds and does not replace `latest.json`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from benchmarks import (
    apps,
    assemble,
    cdc_mysql,
    cdc_postgres,
    ceilings,
    dual_write,
    ferretdb_backends,
    http_source,
    migration,
    switch,
)
from benchmarks.harness import machine

RESULTS = Path(__file__).parent / "results"
REQUIRED = ("TUNEFLOW_KAFKA_BOOTSTRAP", "TUNEFLOW_MONGO_URI", "TUNEFLOW_PG_URL", "TUNEFLOW_MYSQL_URL")
Section = Callable[[dict[str, str], Path, dict[str, Any]], Any]
# In running order; each gets the environment, a scratch folder and the report so far.
SECTIONS: dict[str, Section] = {
    "ceilings": lambda env, _, report: ceilings.run_all(env),
    "apps": lambda env, work, report: apps.run_all(env, report["ceilings"], work),
    "http": lambda env, work, _: http_source.run_all(env, work),
    "cdc_mysql": lambda env, work, _: cdc_mysql.run_all(env, work),
    "cdc_postgres": lambda env, work, _: cdc_postgres.run_all(env, work),
    "ferretdb_backends": lambda env, _, __: ferretdb_backends.run_all(env),
    "migration": lambda env, _, __: migration.run_all(env),
    "dual_write": lambda env, _, __: dual_write.run_all(env),
    "switch": lambda env, work, _: switch.run_all(env, work),
    "assemble": lambda env, work, _: assemble.run_section(env, work),
}


def chosen(text: str) -> list[str]:
    if not text.strip():
        return list(SECTIONS)
    wanted = {name.strip() for name in text.split(",") if name.strip()}
    unknown = wanted - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown benchmark sections: {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(SECTIONS)}")
    if "apps" in wanted:
        wanted.add("ceilings")
    return [name for name in SECTIONS if name in wanted]


def main() -> int:
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        print(f"missing {', '.join(missing)}: run `make bench`, or `eval \"$(deploy/local/stack env)\"` first",
              file=sys.stderr)
        return 2
    sections = chosen(os.environ.get("TUNEFLOW_BENCH_SECTIONS", ""))
    started = datetime.now(UTC)
    env = dict(os.environ)
    report: dict[str, Any] = {"started_at": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
                              "machine": machine(), "sections": sections}
    with tempfile.TemporaryDirectory(prefix="tf-bench-") as workdir:
        for name in sections:
            report[name] = SECTIONS[name](env, Path(workdir), report)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    if sections == list(SECTIONS):
        (RESULTS / "latest.json").write_bytes(path.read_bytes())
    print(f"report: {path}")
    failed = [check for name in sections if isinstance(report[name], dict)
              for check in report[name].get("failed_checks", [])]
    if failed:
        print(f"failed checks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
