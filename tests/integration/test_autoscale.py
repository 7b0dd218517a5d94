"""Autoscaling on real Kafka: a load step takes a slow processor from 1 to 3 instances, and back to 1 once the
backlog is gone; every record arrives, and each decision is in the stream's history and the autoscaler's metrics."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from streams.deployers.local import LocalDeployer
from streams.runtime.metrics import metric_sum
from tests.integration.pipeline import create_topic, produce
from tests.integration.processes import wait_for
from tests.integration.services import unique_name
from tests.integration.test_stream_lifecycle import Cli

RECORDS = 4000


def _causes(cli: Cli, stream: str) -> list[str]:
    return [r["cause"] for r in cli.json("history", stream) if r["cause"]]


def _instances(cli: Cli, stream: str, label: str) -> int:
    return sum(1 for i in cli.json("status", stream) if i["label"] == label and i["state"] == "up")


def _written_keys(directory: Path) -> set[str]:
    return {json.loads(line)["k"] for path in directory.glob("*.ndjson") for line in path.read_text().splitlines()}


def test_a_load_step_scales_a_slow_processor_out_and_back_in(tmp_path: Path, kafka_bootstrap: str,
                                                             mongo_uri: str) -> None:
    home = tmp_path / "home"
    cli = Cli(home, mongo_uri)
    register = subprocess.run([sys.executable, "-m", "streams.cli", "app", "register", "--name", "slow", "--type",
                               "processor", "--uri", "python:tests.apps.slow:Slow", "--version", "1.0"],
                              capture_output=True, text=True, env=cli.env, timeout=60)
    assert register.returncode == 0, register.stderr
    stream, out = unique_name("auto"), tmp_path / "out"
    raw = f"{stream}_raw"
    create_topic(kafka_bootstrap, raw, 1)
    cli.ok("create", stream, "--definition", f"kafka --topic={raw} | slow --per-record-ms=4 | file --dir={out}")
    cli.ok("deploy", stream, "--properties", "deployer.slow.autoscale=1..3,deployer.slow.autoscale-lag=400,"
                                             "deployer.slow.autoscale-cooldown=6")
    try:
        assert _instances(cli, stream, "slow") == 1
        produce(kafka_bootstrap, raw, [(f"k{i}".encode(), json.dumps({"k": f"k{i}"}).encode(), None)
                                       for i in range(RECORDS)])

        wait_for(lambda: any(c.startswith("autoscale slow 1 → 3") for c in _causes(cli, stream)), 90,
                 "the autoscaler to scale slow from 1 to 3 instances")
        wait_for(lambda: _instances(cli, stream, "slow") == 3, 60, "three slow instances up")
        # Back down to 1: in one step, or through 2 when a reading catches the backlog half drained.
        wait_for(lambda: any(re.match(r"autoscale slow [23] → 1:", c) for c in _causes(cli, stream)), 120,
                 "the autoscaler to scale slow back to 1 once the backlog is gone")
        wait_for(lambda: _instances(cli, stream, "slow") == 1, 60, "one slow instance again")

        autoscaler = LocalDeployer(home).autoscaler(stream)
        assert autoscaler is not None
        with urllib.request.urlopen(f"{autoscaler.url}/metrics", timeout=5) as answer:
            metrics = answer.read().decode()
        assert metric_sum(metrics, "tuneflow_autoscale_decisions_total", app="slow", direction="up") >= 1
        assert metric_sum(metrics, "tuneflow_autoscale_decisions_total", app="slow", direction="down") >= 1
        assert metric_sum(metrics, "tuneflow_autoscale_instances", app="slow") == 1

        wait_for(lambda: _written_keys(out) >= {f"k{i}" for i in range(RECORDS)}, 120, "every record written")
        history: list[dict[str, Any]] = cli.json("history", stream)
        causes = [r["cause"] for r in history if r["cause"]]
        assert all("lag" in cause and "partitions" in cause for cause in causes), causes
    except AssertionError:
        print((home / "streams" / stream / "autoscaler.log").read_text()[-4000:])
        raise
    finally:
        cli("undeploy", stream)
    assert LocalDeployer(home).autoscaler(stream) is None
