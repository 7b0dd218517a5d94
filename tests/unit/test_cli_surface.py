"""Every command has --help; the read commands take --json; a mistyped stream or app name gets a suggestion."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import orjson
import pytest

from streams.cli import cli
from tests.unit.cli import Run, in_process


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


COMMANDS = list(_commands(cli))
READ_COMMANDS = [("stream", "list"), ("stream", "info"), ("stream", "status"), ("stream", "history"),
                 ("stream", "manifest"), ("stream", "validate"), ("app", "list"), ("app", "info")]


@pytest.fixture
def tuneflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """The `tuneflow` entry point in this process: exit code, stdout and stderr of one command."""
    return in_process(tmp_path, monkeypatch, capsys)


def test_the_command_tree_has_the_verbs_users_rely_on() -> None:
    paths = {path for path, _ in COMMANDS}
    assert {("stream", verb) for verb in ("create", "deploy", "undeploy", "destroy", "list", "info", "status",
                                          "update", "rollback", "history", "manifest", "scale", "validate",
                                          "import", "export")} <= paths
    assert {("app", verb) for verb in ("list", "info", "register", "unregister", "default", "run")} <= paths
    assert {("run",), ("demo",)} <= paths


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=" ".join)
def test_every_command_has_help(tuneflow: Run, path: tuple[str, ...]) -> None:
    result = tuneflow(*path, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: tuneflow {' '.join(path)} ")
    command = dict(COMMANDS)[path]
    assert command.help and command.help.strip(), f"tuneflow {' '.join(path)} has no description"
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden and param.name != "help":
            assert param.help, \
                f"tuneflow {' '.join(path)} {param.opts[0]} has no help text"


@pytest.mark.parametrize("path", READ_COMMANDS, ids=" ".join)
def test_read_commands_take_json(path: tuple[str, ...]) -> None:
    command = dict(COMMANDS)[path]
    assert "--json" in [opt for param in command.params for opt in getattr(param, "opts", [])]


def test_json_output_parses_for_a_defined_stream(tuneflow: Run) -> None:
    assert tuneflow("stream", "create", "tracks", "--definition", "kafka --topic=raw | normalize | log"
                    ).returncode == 0
    listed = orjson.loads(tuneflow("stream", "list", "--json").stdout)
    assert listed == [{"name": "tracks", "status": "undeployed",
                       "definition": "kafka --topic=raw | normalize | log"}]
    info = orjson.loads(tuneflow("stream", "info", "tracks", "--json").stdout)
    assert info["canonical"] == "kafka --topic=raw | normalize | log" and info["deployment_properties"] is None
    assert orjson.loads(tuneflow("stream", "status", "tracks", "--json").stdout) == []
    assert orjson.loads(tuneflow("stream", "history", "tracks", "--json").stdout) == []
    no_release = tuneflow("stream", "manifest", "tracks", "--json")
    assert no_release.returncode == 2
    assert no_release.stderr == "Error: stream 'tracks' has no release yet: deploy it first\n"
    assert {a["name"] for a in orjson.loads(tuneflow("app", "list", "--json").stdout)} >= {"kafka", "mongo"}
    assert orjson.loads(tuneflow("app", "info", "normalize", "--json").stdout)["kind"] == "processor"


STREAM_VERBS = [("info",), ("status",), ("history",), ("manifest",), ("deploy",), ("undeploy",), ("destroy",),
                ("update", "--properties", "deployer.log.count=2"), ("update", "--definition", "kafka --topic=x | log"),
                ("rollback",), ("scale", "log", "--count", "2")]


@pytest.mark.parametrize("verb", STREAM_VERBS, ids=lambda v: v[0])
def test_a_mistyped_stream_name_gets_a_suggestion_and_exit_2(tuneflow: Run, verb: tuple[str, ...]) -> None:
    assert tuneflow("stream", "create", "tracks", "--definition", "kafka --topic=raw | log").returncode == 0
    result = tuneflow("stream", verb[0], "trakcs", *verb[1:])
    assert result.returncode == 2, result.stderr
    assert result.stderr == "Error: unknown stream 'trakcs'. Did you mean 'tracks'?\n"


@pytest.mark.parametrize("args", [("info", "normalise"), ("unregister", "normalise"), ("default", "normalise", "1")],
                         ids=lambda a: a[0])
def test_a_mistyped_app_name_gets_a_suggestion_and_exit_2(tuneflow: Run, args: tuple[str, ...]) -> None:
    result = tuneflow("app", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Error: unknown app 'normalise'. Did you mean 'normalize'?")


def test_a_mistyped_app_label_when_scaling_gets_a_suggestion(tuneflow: Run) -> None:
    assert tuneflow("stream", "create", "tracks", "--definition", "kafka --topic=raw | log").returncode == 0
    result = tuneflow("stream", "scale", "tracks", "lgo", "--count", "2")
    assert result.returncode == 2
    assert result.stderr == "Error: stream 'tracks' has no app 'lgo'. Did you mean 'log'? Apps: kafka, log\n"
