"""The stack's real Prometheus finds a locally deployed stream's instances, scrapes them, and forgets them.

Also: the scrape config and the rules pass `promtool`, and each alert's unit test passes `promtool test rules`.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from streams.catalog.samples import samples
from tests.integration.pipeline import create_topic, produce
from tests.integration.processes import wait_for
from tests.integration.services import unique_name
from tests.integration.test_stream_lifecycle import Cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARDS = DEPLOY / "grafana"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=PROMETHEUS)


def test_scrape_config_and_rules_pass_promtool() -> None:
    config = _promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    assert "SUCCESS: 10 rules found" in config.stdout
    tests = _promtool("test", "rules", *sorted(str(p.relative_to(PROMETHEUS)) for p in PROMETHEUS.glob("tests/*.yml")))
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "SUCCESS" in tests.stdout


def test_the_committed_dashboards_are_what_the_code_builds() -> None:
    check = subprocess.run([sys.executable, str(DASHBOARDS / "dashboards.py"), "--check"], capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stderr


def _panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expression) of every panel query of every dashboard."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                found.append((path.name, panel["title"], target["expr"]))
    return found


def _for_stream(expr: str, stream: str) -> str:
    """A dashboard query as Grafana sends it with `$stream` set to one stream and every app selected."""
    return re.sub(r"\$__rate_interval", "1m", expr.replace("$stream", stream).replace("$app", ".*"))


def _watch_in_a_terminal(env: dict[str, str], stream: str, seconds: float) -> tuple[str, int]:
    """`tuneflow stream status STREAM --watch` on a pseudo-terminal for `seconds`, then Ctrl-C: (screen, exit code)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "streams.cli", "stream", "status", stream, "--watch"],
                               stdin=follower, stdout=follower, stderr=follower, env={**env, "COLUMNS": "120"},
                               start_new_session=True)
    os.close(follower)
    screen = b""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if select.select([leader], [], [], 0.2)[0]:
                screen += os.read(leader, 65536)
        process.send_signal(signal.SIGINT)
        # read on while it exits: a full terminal buffer would hold its last screen (and its exit) back
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if select.select([leader], [], [], 0.2)[0]:
                try:
                    screen += os.read(leader, 65536)
                except OSError:
                    break
            elif process.poll() is not None:
                break
        code = process.wait(5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        os.close(leader)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace")), code


def _query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _rates(prometheus_url: str, stream: str) -> dict[str, float]:
    result = _query(prometheus_url, f'sum by (app) (rate(tuneflow_records_in_total{{stream="{stream}"}}[1m]))')
    return {series["metric"]["app"]: float(series["value"][1]) for series in result}


def test_prometheus_scrapes_every_app_of_a_deployed_stream(tmp_path: Path, kafka_bootstrap: str, mongo_uri: str,
                                                           prometheus_url: str) -> None:
    targets = Path(os.environ["TUNEFLOW_PROMETHEUS_TARGETS"])
    cli = Cli(tmp_path, mongo_uri)
    stream = unique_name("prom")
    raw = f"{stream}_raw"
    create_topic(kafka_bootstrap, raw, 1)
    cli.ok("create", stream, "--definition", f"kafka --topic={raw} | normalize | log --level=DEBUG")
    cli.ok("deploy", stream, "--properties", "deployer.normalize.count=2,deployer.normalize.memory=512m")
    target_file = targets / f"{stream}.json"
    stop = threading.Event()

    def feed() -> None:  # a steady trickle, so every app has a rate over the last minute
        for round_ in range(600):
            if stop.is_set():
                return
            # 5% invalid: the failure and dead-letter panels have something to show
            produce(kafka_bootstrap, raw, [(s.key, s.value, None) for s in samples(200, 0.05, seed=round_)])
            time.sleep(0.5)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        groups = json.loads(target_file.read_text())
        assert sorted((g["labels"]["app"], g["labels"]["instance"]) for g in groups) == [
            ("kafka", "0"), ("log", "0"), ("normalize", "0"), ("normalize", "1")]
        assert all(g["labels"]["stream"] == stream and g["targets"][0].startswith("127.0.0.1:") for g in groups)

        wait_for(lambda: set(_rates(prometheus_url, stream)) == {"kafka", "normalize", "log"}
                 and all(rate > 0 for rate in _rates(prometheus_url, stream).values()),
                 90, "a non-zero rate(tuneflow_records_in_total[1m]) for every app in Prometheus")
        up = _query(prometheus_url, f'up{{job="tuneflow", stream="{stream}"}}')
        assert sorted((s["metric"]["app"], s["metric"]["instance"], s["value"][1]) for s in up) == [
            ("kafka", "0", "1"), ("log", "0", "1"), ("normalize", "0", "1"), ("normalize", "1", "1")]
        memory = _query(prometheus_url, f'tuneflow_memory_rss_bytes{{stream="{stream}"}}')
        assert len(memory) == 4 and all(float(s["value"][1]) > 10 * 2**20 for s in memory)

        queries = _panel_queries()
        assert len(queries) >= 12
        wait_for(lambda: all(_query(prometheus_url, _for_stream(q, stream)) for _, _, q in queries), 60,
                 "data for every dashboard panel")
        empty = [(d, t) for d, t, q in queries if not _query(prometheus_url, _for_stream(q, stream))]
        assert empty == []

        screen, code = _watch_in_a_terminal(cli.env, stream, seconds=4)
        assert code == 0, screen
        assert f"stream {stream}" in screen and "lag trend" in screen
        assert all(app in screen for app in ("kafka", "normalize", "log")) and "2/2" in screen
    finally:
        stop.set()
        feeder.join(30)
        cli.ok("undeploy", stream)
    assert not target_file.exists()
    wait_for(lambda: not _query(prometheus_url, f'up{{job="tuneflow", stream="{stream}"}}'), 60,
             "Prometheus to drop the stream's targets once it is undeployed")
