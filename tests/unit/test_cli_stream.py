"""`tuneflow stream` definitions as a user changes them: validate and update --definition; exit codes, messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from sources.base import AppOptions, Leftover, SourceApp


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("TUNEFLOW_DB_URL", raising=False)


def _tuneflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ))


def test_a_valid_definition_prints_its_apps_and_topics() -> None:
    result = _tuneflow("stream", "validate", "t1", "--definition", "kafka --topic=raw |normalize| mongo")
    assert result.returncode == 0, result.stderr
    assert "stream t1: valid" in result.stdout
    assert "kafka --topic=raw | normalize | mongo" in result.stdout
    assert "in: t1.kafka  out: t1.normalize" in result.stdout


def test_json_report_names_fan_in_and_out_of_destinations() -> None:
    result = _tuneflow("stream", "validate", "t1", "--definition", "kafka --topic=raw | normalize > :clean", "--json")
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert [(a["label"], a["kind"], a["outputs"]) for a in report["apps"]] == [
        ("kafka", "source", ["t1.kafka"]), ("normalize", "processor", ["clean"])]
    assert report["destinations"] == [{"name": "clean", "tap": False, "writers": ["t1"], "readers": []}]


def test_a_mistyped_app_gets_a_suggestion_and_exit_2_without_traceback() -> None:
    result = _tuneflow("stream", "validate", "t1", "--definition", "kafka --topic=raw | normalise | mongo")
    assert result.returncode == 2
    assert result.stderr == ("Error: unknown processor app 'normalise'. Did you mean 'normalize'? "
                             "Known: assemble, normalize\n")


def test_a_syntax_error_shows_where_with_a_caret() -> None:
    result = _tuneflow("stream", "validate", "t1", "--definition", "kafka --topic=raw | | mongo")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "Error: unexpected '|' at position 20: an app name was expected",
        "  kafka --topic=raw | | mongo",
        "                      ^",
    ]
    assert "Traceback" not in result.stderr


def test_invalid_options_name_the_field_and_reason() -> None:
    result = _tuneflow("stream", "validate", "t1", "--definition", "kafka --topic=raw --nope=1 | log")
    assert result.returncode == 2
    assert "--nope: unknown option" in result.stderr


def test_a_cycle_with_defined_streams_is_named() -> None:
    for name, definition in (("s1", ":a > normalize > :b"), ("s2", ":b > normalize > :c")):
        assert _tuneflow("stream", "create", name, "--definition", definition).returncode == 0
    result = _tuneflow("stream", "validate", "s3", "--definition", ":c > normalize > :a")
    assert result.returncode == 2
    assert result.stderr == "Error: cycle through named destinations: s3 -> :a -> s1 -> :b -> s2 -> :c -> s3\n"


def test_a_mistyped_stream_name_gets_a_suggestion() -> None:
    assert _tuneflow("stream", "create", "tracks", "--definition", "kafka --topic=raw | log").returncode == 0
    result = _tuneflow("stream", "info", "trakcs")
    assert result.returncode == 2
    assert "Did you mean 'tracks'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_new_definition_of_an_undeployed_stream_prints_the_diff_and_restarts_nothing() -> None:
    assert _tuneflow("stream", "create", "t1", "--definition", "kafka --topic=raw | normalize | log").returncode == 0
    same = _tuneflow("stream", "update", "t1", "--definition", "kafka --topic=raw | normalize | log")
    assert same.returncode == 2
    assert same.stderr == "Error: stream 't1' already has that definition: kafka --topic=raw | normalize | log\n"
    result = _tuneflow("stream", "update", "t1", "--definition", "kafka --topic=raw | file --dir=/tmp/t1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "- kafka --topic=raw | normalize | log",
        "+ kafka --topic=raw | file --dir=/tmp/t1",
        "  = kafka          same",
        "  + file           added  file --dir=/tmp/t1 (in: t1.kafka, out: -, ×1)",
        "  - normalize      removed  normalize (in: t1.kafka, out: t1.normalize, ×1)",
        "  - log            removed  log (in: t1.normalize, out: -, ×1)",
        "stream t1 is not deployed: its definition is changed, nothing restarted",
    ]
    info = orjson.loads(_tuneflow("stream", "info", "t1", "--json").stdout)
    assert info["canonical"] == "kafka --topic=raw | file --dir=/tmp/t1"
    both = _tuneflow("stream", "update", "t1", "--definition", "kafka --topic=raw | log", "--properties", "a.b.c=1")
    assert both.returncode == 2 and "give --definition or --properties, one change at a time" in both.stderr


def test_a_new_definition_drops_the_properties_of_apps_it_removes(tmp_path: Path) -> None:
    from streams.binders.memory import MemoryBinder
    from streams.deployers.local import LocalDeployer
    from streams.platform.service import StreamService
    from streams.state import open_state

    service = StreamService(open_state(), LocalDeployer(tmp_path), MemoryBinder)
    service.create("t1", "kafka --topic=raw | normalize | log")
    service.state.save_deployment_properties(
        "t1", 'deployer.normalize.count=2,app.log.level=DEBUG,deployer.*.memory=1g',
        {"deployer.normalize.count": "2", "app.log.level": "DEBUG", "deployer.*.memory": "1g"})
    result = service.redefine("t1", "kafka --topic=raw | log")
    assert result.dropped_properties == ["deployer.normalize.count"] and result.rollout is None
    stream = service.state.get_stream("t1")
    assert stream.deployment_properties == {"app.log.level": "DEBUG", "deployer.*.memory": "1g"}
    assert stream.deployment_properties_raw == "app.log.level=DEBUG,deployer.*.memory=1g"
    assert [(a.label, a.change) for a in result.diff.apps] == [("kafka", "same"), ("log", "changed"),
                                                               ("normalize", "removed")]


class MarkerOptions(AppOptions):
    marker: str


class MarkerSource(SourceApp[MarkerOptions]):
    """A source that leaves a file behind, as a CDC source leaves a replication slot."""

    name = "marker"
    options_model = MarkerOptions

    @classmethod
    def leftovers(cls, options: MarkerOptions, stream: str, label: str) -> list[Leftover]:
        path = Path(options.marker)
        if not path.exists():
            return []
        return [Leftover(f"marker {path.name} of {stream}.{label}", f"rm {path}", path.unlink)]


def test_destroy_tells_what_an_app_left_behind_and_how_to_drop_it_or_drops_it(tmp_path: Path) -> None:
    from streams.binders.memory import MemoryBinder
    from streams.deployers.local import LocalDeployer
    from streams.platform.service import StreamService
    from streams.state import open_state

    service = StreamService(open_state(), LocalDeployer(tmp_path), MemoryBinder)
    service.registry.register("source", "marker", "python:tests.unit.test_cli_stream:MarkerSource", version="1.0")
    kept, dropped = tmp_path / "kept", tmp_path / "dropped"
    for marker in (kept, dropped):
        marker.touch()
        service.create(marker.name, f"marker --marker={marker} | log")

    result = _tuneflow("stream", "destroy", "kept")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["destroyed stream kept",
                                          f"kept marker kept of kept.marker; drop it with: rm {kept}"]
    assert kept.exists()

    result = _tuneflow("stream", "destroy", "dropped", "--drop-leftovers")
    assert result.stdout.splitlines() == ["destroyed stream dropped", "dropped marker dropped of dropped.marker"]
    assert not dropped.exists() and service.state.list_streams() == []
