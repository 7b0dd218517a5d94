"""The local deployer: one OS process per app instance (`tuneflow app run`), found again through its record file.

Layout under `<home>/streams/<stream>/`: `<label>-<i>.log` (the instance's output, across releases),
`<label>-<i>.r<release>.json` (pid, port, command: what `status` and `stop` need) and `<label>-<i>.r<release>.port`
(written by the instance once its HTTP port listens; ports are picked by the instance itself with `--port 0`, so two
instances never race for one). During an update the old and the new release of an app run side by side.
Status always comes from the instance's own `/healthz`, `/readyz` and `/metrics`, never from a remembered guess.
Every start and stop rewrites the stream's Prometheus target file, so Prometheus scrapes exactly what runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streams import settings
from streams.deployers.base import AppInstanceStatus
from streams.deployers.prometheus_targets import targets_dir, write_target_file, write_targets
from streams.errors import ServiceUnavailableError
from streams.masking import is_secret_option
from streams.platform.properties import memory_mb
from streams.runtime.metrics import metric_sum

STOP_TIMEOUT_S = 30.0
AUTOSCALER_RECORD = "autoscaler.record"  # not *.json: the instances' records are
INSTANCE_INDEX = "TUNEFLOW_INSTANCE_INDEX"  # each instance's stable index among its app's, 0 … count-1
START_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class InstanceSpec:
    """What one instance runs: its app, place in the stream, topics and options."""

    stream: str
    label: str
    app: str
    kind: str
    index: int = 0
    inputs: Sequence[str] = ()
    output: str | None = None
    group: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    uri: str | None = None  # the registered version's python:module:attribute
    release: int = 0  # during an update the old and the new release of an app run side by side
    memory_mb: int | None = None  # deployer.<app>.memory: the instance drains and exits past this RSS

    @property
    def name(self) -> str:
        return f"{self.label}-{self.index}"

    @property
    def record_stem(self) -> str:
        return f"{self.name}.r{self.release}"


@dataclass(frozen=True)
class Instance:
    """A started instance as recorded on disk."""

    stream: str
    label: str
    index: int
    pid: int
    port: int
    log: str
    command: list[str]
    started_at: float
    release: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class InstanceStatus:
    instance: Instance
    state: str  # up | starting | stalled | down
    ready: bool
    records_in: float = 0.0
    records_out: float = 0.0
    records_failed: float = 0.0
    lag: float = 0.0


class LocalDeployer:
    def __init__(self, home: Path, python: str = sys.executable, targets: Path | None = None) -> None:
        self.root = home / "streams"
        self.python = python
        self.targets = targets if targets is not None else targets_dir(home)

    # -- the deployer protocol (streams.deployers.base) -------------------------------------------------------

    def start_apps(self, manifest: dict[str, Any], labels: Sequence[str], release: int) -> None:
        """Start the instances of `labels`, sinks first and sources last, so each app's readers are there; all
        ready within TUNEFLOW_READY_TIMEOUT_S, or none left running."""
        started: list[Instance] = []
        try:
            for app in reversed(manifest["apps"]):
                if app["label"] in labels:
                    started += [self.start(instance_spec(manifest["stream"], app, index, release))
                                for index in range(app["count"])]
            timeout_s = settings.ready_timeout_s()
            for instance in started:
                if not self.wait_ready(instance, timeout_s):
                    raise ServiceUnavailableError(self.not_ready(instance, timeout_s))
        except Exception:
            for instance in started:
                self.stop(instance)
            raise

    def stop_apps(self, stream: str, labels: Sequence[str] | None = None, before: int | None = None) -> int:
        """Stop the instances of `labels` (all when None) from releases before `before` (any when None); the
        whole stream's stop takes its autoscaler first, so it scales nothing back up."""
        if labels is None:
            self.stop_autoscaler(stream)
        going = [i for i in self.instances(stream)
                 if (labels is None or i.label in labels) and (before is None or i.release < before)]
        for instance in going:
            self.stop(instance)
        return len(going)

    def follow_autoscale(self, stream: str, manifest: dict[str, Any]) -> None:
        """An autoscaler process runs beside the stream while any of its apps has `deployer.<app>.autoscale`."""
        if any(app.get("autoscale") for app in manifest["apps"]):
            self.start_autoscaler(stream)
        else:
            self.stop_autoscaler(stream)

    def deployed(self, stream: str) -> bool:
        return bool(self.instances(stream))

    def running(self, stream: str) -> bool:
        return any(self.status(i).state != "down" for i in self.instances(stream))

    def stream_status(self, stream: str, window_s: float) -> list[AppInstanceStatus]:
        """Each instance as its own endpoints report it now; rates over `window_s`."""
        instances = self.instances(stream)
        first = [self.status(i) for i in instances]
        if instances and window_s > 0:
            time.sleep(window_s)
        second = [self.status(i) for i in instances] if window_s > 0 else first
        return [_app_status(a, b, window_s) for a, b in zip(first, second, strict=True)]

    def render(self, manifest: dict[str, Any], release: int, validate: bool = False) -> list[dict[str, Any]]:
        """The instances `start_apps` would start, each one's command line with its secret options masked."""
        specs = [instance_spec(manifest["stream"], {**app, "options": _masked(app["options"])}, index, release)
                 for app in manifest["apps"] for index in range(app["count"])]
        return [{"instance": s.name, "command": self._command(s, self.root / s.stream / f"{s.record_stem}.port")}
                for s in specs]

    # -- start and stop --------------------------------------------------------------------------------------

    def start(self, spec: InstanceSpec, timeout_s: float = START_TIMEOUT_S) -> Instance:
        """Start the instance and wait until its HTTP endpoint listens; an early exit raises with its log tail."""
        directory = self.root / spec.stream
        directory.mkdir(parents=True, exist_ok=True)
        port_file, log_path = directory / f"{spec.record_stem}.port", directory / f"{spec.name}.log"
        port_file.unlink(missing_ok=True)
        command = self._command(spec, port_file)
        with log_path.open("ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env={**os.environ, **spec.env, INSTANCE_INDEX: str(spec.index)},
                                       start_new_session=True)
        port = _wait_for_port(process, port_file, log_path, timeout_s)
        instance = Instance(spec.stream, spec.label, spec.index, process.pid, port, str(log_path), command,
                            time.time(), spec.release)
        _write_record(directory / f"{spec.record_stem}.json", instance)
        self._announce(spec.stream)
        return instance

    def _command(self, spec: InstanceSpec, port_file: Path) -> list[str]:
        command = [self.python, "-m", "streams.cli", "app", "run", spec.app, "--kind", spec.kind,
                   "--stream", spec.stream, "--label", spec.label, "--instance", str(spec.index),
                   "--port", "0", "--port-file", str(port_file)]
        for topic in spec.inputs:
            command += ["--input", topic]
        if spec.output:
            command += ["--output", spec.output]
        if spec.group:
            command += ["--group", spec.group]
        if spec.uri:
            command += ["--uri", spec.uri]
        if spec.memory_mb is not None:
            command += ["--max-memory-mb", str(spec.memory_mb)]
        return [*command, "--", *(f"--{key}={value}" for key, value in spec.options.items())]

    def stop(self, instance: Instance, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (the instance drains, flushes and commits), SIGKILL after `timeout_s`; forget its record."""
        if _is_ours(instance):
            stop_process(instance.pid, timeout_s)
        self._record_path(instance).unlink(missing_ok=True)
        self._record_path(instance).with_suffix(".port").unlink(missing_ok=True)
        self._announce(instance.stream)

    def _announce(self, stream: str) -> None:
        """Tell Prometheus which instances of the stream run now (file-based service discovery)."""
        write_targets(self.targets, stream, [i for i in self.instances(stream) if _is_ours(i)])

    # -- the autoscaler -------------------------------------------------------------------------------------

    def start_autoscaler(self, stream: str, timeout_s: float = START_TIMEOUT_S) -> Instance:
        """One autoscaler process per stream (`tuneflow stream autoscale-run`), started once, found again by its
        record; Prometheus finds its /metrics as app `autoscaler`."""
        running = self.autoscaler(stream)
        if running is not None:
            return running
        directory = self.root / stream
        directory.mkdir(parents=True, exist_ok=True)
        port_file, log_path = directory / "autoscaler.port", directory / "autoscaler.log"
        port_file.unlink(missing_ok=True)
        command = [self.python, "-m", "streams.cli", "stream", "autoscale-run", stream, "--port-file", str(port_file)]
        with log_path.open("ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=dict(os.environ), start_new_session=True)
        port = _wait_for_port(process, port_file, log_path, timeout_s)
        instance = Instance(stream, "autoscaler", 0, process.pid, port, str(log_path), command, time.time())
        _write_record(directory / AUTOSCALER_RECORD, instance)
        write_target_file(self.targets, f"{stream}.autoscaler", [
            {"targets": [f"127.0.0.1:{port}"], "labels": {"stream": stream, "app": "autoscaler", "instance": "0"}}])
        return instance

    def autoscaler(self, stream: str) -> Instance | None:
        """The stream's autoscaler, if one runs."""
        instance = _read_record(self.root / stream / AUTOSCALER_RECORD)
        return instance if instance is not None and _is_ours(instance) else None

    def stop_autoscaler(self, stream: str) -> None:
        instance = self.autoscaler(stream)
        if instance is not None:
            stop_process(instance.pid)
        (self.root / stream / AUTOSCALER_RECORD).unlink(missing_ok=True)
        write_target_file(self.targets, f"{stream}.autoscaler", [])

    # -- what runs -------------------------------------------------------------------------------------------

    def instances(self, stream: str) -> list[Instance]:
        """Every recorded instance of `stream`, in label and index order (dead ones included: see `status`)."""
        directory = self.root / stream
        if not directory.is_dir():
            return []
        found = [_read_record(path) for path in sorted(directory.glob("*.json"))]
        return sorted((i for i in found if i is not None), key=lambda i: (i.label, i.index, i.release))

    def status(self, instance: Instance) -> InstanceStatus:
        if not _is_ours(instance):
            return InstanceStatus(instance, "down", ready=False)
        alive = _http_ok(f"{instance.url}/healthz")
        if alive is None:
            return InstanceStatus(instance, "starting", ready=False)
        ready = bool(_http_ok(f"{instance.url}/readyz"))
        text = _http_text(f"{instance.url}/metrics")
        return InstanceStatus(instance, "up" if alive else "stalled", ready,
                              records_in=metric_sum(text, "tuneflow_records_in_total"),
                              records_out=metric_sum(text, "tuneflow_records_out_total"),
                              records_failed=metric_sum(text, "tuneflow_records_failed_total"),
                              lag=metric_sum(text, "tuneflow_consumer_lag"))

    def wait_ready(self, instance: Instance, timeout_s: float) -> bool:
        """True once the instance answers /readyz; False if it exits or the time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _is_ours(instance):
                return False
            if _http_ok(f"{instance.url}/readyz"):
                return True
            time.sleep(0.25)
        return False

    def not_ready(self, instance: Instance, timeout_s: float) -> str:
        """Why `wait_ready` gave up: the instance exited (its reason is at the end of its log) or it is still
        starting after `timeout_s`."""
        name = f"{instance.label}-{instance.index}"
        tail = f"last lines of {instance.log}:\n{_tail(Path(instance.log))}"
        if _is_ours(instance):
            return f"{name} did not become ready within {timeout_s:g}s (TUNEFLOW_READY_TIMEOUT_S); {tail}"
        return f"{name} exited before it became ready; {tail}"

    def _record_path(self, instance: Instance) -> Path:
        return self.root / instance.stream / f"{instance.label}-{instance.index}.r{instance.release}.json"


def instance_spec(stream: str, app: dict[str, Any], index: int, release: int) -> InstanceSpec:
    """Instance `index` of one app of a release's manifest."""
    return InstanceSpec(stream=stream, label=app["label"], app=app["app"], kind=app["kind"], index=index,
                        inputs=app["inputs"], output=app["output"], group=app.get("group"), options=app["options"],
                        uri=app["uri"], release=release,
                        memory_mb=memory_mb(app["memory"]) if app.get("memory") else None)


def _masked(options: Mapping[str, str]) -> dict[str, str]:
    return {key: "***" if is_secret_option(key, value) else value for key, value in options.items()}


def _app_status(before: InstanceStatus, after: InstanceStatus, window_s: float) -> AppInstanceStatus:
    def rate(field: str) -> float:
        return max(0.0, getattr(after, field) - getattr(before, field)) / window_s if window_s > 0 else 0.0

    instance = after.instance
    return AppInstanceStatus(instance.label, instance.index, instance.pid, instance.port, after.state, after.ready,
                             after.records_in, after.records_out, after.records_failed, rate("records_in"),
                             rate("records_out"), rate("records_failed"), after.lag, name=f"pid {instance.pid}")


def stop_process(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM, then SIGKILL after `timeout_s`; True if it had to be killed."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    if _wait_gone(pid, timeout_s):
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    _wait_gone(pid, 10)
    return True


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except (FileNotFoundError, IndexError):
        return False


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child: its own parent collects it
        os.waitpid(pid, os.WNOHANG)  # our own child: collect it so it does not linger as a zombie


def _is_ours(instance: Instance) -> bool:
    """The pid is alive and still runs the recorded command (a recycled pid is somebody else's process)."""
    if not pid_alive(instance.pid):
        return False
    try:
        with open(f"/proc/{instance.pid}/cmdline", "rb") as cmdline:
            running = cmdline.read().split(b"\0")
    except OSError:
        return False
    return [part.decode(errors="replace") for part in running if part] == instance.command


def _wait_for_port(process: subprocess.Popen[bytes], port_file: Path, log_path: Path, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_file.exists():
            return int(port_file.read_text().strip())
        if process.poll() is not None:
            raise ServiceUnavailableError(f"instance exited with code {process.returncode} while starting; "
                                          f"last lines of {log_path}:\n{_tail(log_path)}")
        time.sleep(0.05)
    stop_process(process.pid, 5)
    raise ServiceUnavailableError(f"instance did not open its HTTP port within {timeout_s:g}s; "
                                  f"last lines of {log_path}:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _write_record(path: Path, instance: Instance) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(orjson.dumps(asdict(instance)))
    os.replace(partial, path)


def _read_record(path: Path) -> Instance | None:
    try:
        return Instance(**orjson.loads(path.read_bytes()))
    except (OSError, orjson.JSONDecodeError, TypeError):
        return None  # half-written or foreign: not an instance this deployer started


def _http_ok(url: str) -> bool | None:
    """True for 200, False for another status, None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as answer:
            return bool(answer.status == 200)
    except urllib.error.HTTPError:
        return False
    except OSError:
        return None


def _http_text(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""
