"""The local deployer on real Kafka: instances as OS processes, status from their endpoints, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from streams.catalog.samples import samples
from streams.deployers.local import InstanceSpec, LocalDeployer, pid_alive, stop_process
from streams.errors import ServiceUnavailableError
from tests.integration.pipeline import create_topic, produce, read_topic
from tests.integration.processes import wait_for
from tests.integration.services import unique_name


def _http_metrics(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def _normalize(stream: str, index: int, source: str) -> InstanceSpec:
    return InstanceSpec(stream=stream, label="normalize", app="normalize", kind="processor", index=index,
                        inputs=[source], output=f"{stream}.normalize")


def test_two_instances_share_the_work_report_status_and_stop_without_a_trace(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    stream = unique_name("tfd")
    source = f"{stream}_raw"
    create_topic(kafka_bootstrap, source, 4)
    create_topic(kafka_bootstrap, f"{stream}.normalize", 4)
    items = samples(3000, invalid_ratio=0.0, seed=3)
    deployer = LocalDeployer(tmp_path)
    started = [deployer.start(_normalize(stream, i, source)) for i in range(2)]
    try:
        assert started[0].port != started[1].port
        assert [i.pid for i in deployer.instances(stream)] == [i.pid for i in started]
        assert all(deployer.wait_ready(i, 60) for i in started)
        # Records go in once both members hold partitions (each reports lag for what it was assigned).
        wait_for(lambda: all(_http_metrics(i.url).count("tuneflow_consumer_lag{") for i in started), 60,
                 "both instances assigned partitions")
        produce(kafka_bootstrap, source, [(s.key, s.value, None) for s in items])

        def processed() -> float:
            return sum(deployer.status(i).records_in for i in started)

        wait_for(processed, 120, "some records processed")
        wait_for(lambda: processed() >= len(items), 120, "every record processed")
        statuses = [deployer.status(i) for i in started]
        assert [s.state for s in statuses] == ["up", "up"]
        assert all(s.ready for s in statuses)
        assert all(s.records_in > 0 for s in statuses), "the two instances did not share the partitions"
        assert sum(s.records_out for s in statuses) == len(items)
    finally:
        for instance in started:
            deployer.stop(instance)
    assert not any(pid_alive(i.pid) for i in started)
    assert deployer.instances(stream) == []
    assert len(read_topic(kafka_bootstrap, f"{stream}.normalize")) == len(items)
    log = (tmp_path / "streams" / stream / "normalize-1.log").read_text()
    assert "received SIGTERM: draining" in log


def test_a_killed_instance_reads_as_down(kafka_bootstrap: str, tmp_path: Path) -> None:
    stream = unique_name("tfd")
    create_topic(kafka_bootstrap, f"{stream}_raw", 1)
    deployer = LocalDeployer(tmp_path)
    instance = deployer.start(_normalize(stream, 0, f"{stream}_raw"))
    os.kill(instance.pid, signal.SIGKILL)
    wait_for(lambda: deployer.status(instance).state == "down", 10, "the instance to read as down")
    deployer.stop(instance)
    assert deployer.instances(stream) == []


def test_an_instance_that_cannot_start_says_why(kafka_bootstrap: str, tmp_path: Path) -> None:
    spec = InstanceSpec(stream=unique_name("tfd"), label="normalize", app="normalize", kind="processor",
                        inputs=["x"], output="y", options={"strict": "yes"})
    with pytest.raises(ServiceUnavailableError, match=r"exited with code 2 while starting(.|\n)*--strict: unknown"):
        LocalDeployer(tmp_path).start(spec)


def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    stubborn = subprocess.Popen([sys.executable, "-c",
                                 "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                 "print('ready', flush=True); time.sleep(120)"], stdout=subprocess.PIPE)
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    assert stop_process(stubborn.pid, timeout_s=1) is True  # True: it took a SIGKILL
    assert not pid_alive(stubborn.pid)


def test_an_instance_past_its_memory_limit_drains_and_goes_down_saying_why(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    stream = unique_name("tfm")
    create_topic(kafka_bootstrap, f"{stream}_raw", 1)
    deployer = LocalDeployer(tmp_path)
    spec = InstanceSpec(stream=stream, label="normalize", app="normalize", kind="processor",
                        inputs=[f"{stream}_raw"], output=f"{stream}.normalize", memory_mb=5)
    assert "--max-memory-mb" in deployer._command(spec, tmp_path / "port")
    instance = deployer.start(spec)
    try:
        wait_for(lambda: deployer.status(instance).state == "down", 60, "the instance to stop")
        assert not pid_alive(instance.pid)
        log = Path(instance.log).read_text()
        assert "memory limit exceeded: RSS" in log and "> 5 MiB (deployer.normalize.memory)" in log
    finally:
        deployer.stop(instance)
