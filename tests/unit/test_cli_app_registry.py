"""`tuneflow app list|register|info|unregister|default` against a state database under a scratch TUNEFLOW_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def tuneflow(tmp_path: Path) -> Run:
    env = {**os.environ, "TUNEFLOW_HOME": str(tmp_path)}
    env.pop("TUNEFLOW_DB_URL", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "streams.cli", "app", *args], capture_output=True, text=True,
                              env=env, timeout=60)

    return run


def test_built_in_apps_are_pre_registered_as_defaults(tuneflow: Run) -> None:
    result = tuneflow("list", "--json")
    assert result.returncode == 0, result.stderr
    apps = {(a["kind"], a["name"]): a for a in orjson.loads(result.stdout)}
    assert {("source", "kafka"), ("processor", "normalize"), ("sink", "mongo"), ("sink", "log"),
            ("sink", "file")} <= apps.keys()
    assert apps[("sink", "mongo")]["uri"] == "python:sinks.mongo:MongoSink"
    assert all(a["default"] for a in apps.values())


def test_info_documents_each_option_from_the_options_model(tuneflow: Run) -> None:
    result = tuneflow("info", "mongo", "--json")
    assert result.returncode == 0, result.stderr
    options = {o["name"]: o for o in orjson.loads(result.stdout)["options"]}
    assert options["database"] == {"name": "database", "type": "str", "required": False, "default": "catalog",
                                   "description": "Database name."}
    assert set(options) == {"uri", "database", "collection"}
    text = tuneflow("info", "file").stdout
    assert "--dir=<Path>  (required)" in text


def test_versions_and_the_default_one(tuneflow: Run) -> None:
    uri = "python:processors.normalize:Normalize"
    assert tuneflow("register", "--name", "clean", "--type", "processor", "--uri", uri, "--version", "1.0") \
        .stdout == f"registered processor clean 1.0 (default): {uri}\n"
    assert tuneflow("register", "--name", "clean", "--type", "processor", "--uri", uri, "--version", "2.0") \
        .stdout == f"registered processor clean 2.0: {uri}\n"
    assert orjson.loads(tuneflow("info", "clean", "--json").stdout)["version"] == "1.0"
    assert tuneflow("default", "clean", "2.0").returncode == 0
    assert orjson.loads(tuneflow("info", "clean", "--json").stdout)["version"] == "2.0"
    again = tuneflow("register", "--name", "clean", "--type", "processor", "--uri", uri, "--version", "2.0")
    assert again.returncode == 2 and "already registered" in again.stderr
    assert tuneflow("unregister", "clean", "--version", "1.0").stdout == "unregistered processor clean 1.0\n"
    assert [(a["name"], a["version"]) for a in orjson.loads(tuneflow("list", "--json").stdout)
            if a["name"] == "clean"] == [("clean", "2.0")]


@pytest.mark.parametrize(("args", "message"), [
    (("info", "mongoo"), "Error: unknown app 'mongoo'. Did you mean 'mongo'?"),
    (("register", "--name", "x", "--type", "sink", "--uri", "python:processors.normalize:Normalize"),
     "Error: python:processors.normalize:Normalize is a processor app, not a sink"),
    (("register", "--name", "x", "--type", "sink", "--uri", "python:nope.x:Y"),
     "Error: cannot import nope.x for python:nope.x:Y: No module named 'nope'"),
    (("register", "--name", "x", "--type", "sink", "--uri", "sinks.log:LogSink"),
     "Error: invalid app URI 'sinks.log:LogSink': expected python:module:attribute, e.g. python:sinks.log:LogSink"),
    (("register", "--name", "x", "--type", "sink", "--uri", "python:streams.errors:ConfigError"),
     "Error: python:streams.errors:ConfigError is not a tuneflow app (a SourceApp, ProcessorApp or SinkApp "
     "subclass)"),
])
def test_mistakes_get_exit_2_and_a_clear_message(tuneflow: Run, args: tuple[str, ...], message: str) -> None:
    result = tuneflow(*args)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr
