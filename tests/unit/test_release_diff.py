"""The diff `stream update` prints: the definition, then each app added, removed, changed or the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streams.dsl import parse
from streams.platform.diff import diff_manifests
from streams.platform.manifest import build_manifest
from streams.registry import Registry
from streams.state import open_state


def _app(label: str, app: str, inputs: list[str], output: str | None, **extra: Any) -> dict[str, Any]:
    return {"label": label, "app": app, "kind": "processor", "version": "0.1.0", "uri": f"python:x:{app}",
            "options": extra.pop("options", {}), "inputs": inputs, "output": output, "count": 1, "memory": None,
            **extra}


OLD = {"definition": "kafka --topic=raw | normalize | mongo",
       "apps": [_app("kafka", "kafka", [], "t.kafka", options={"topic": "raw"}),
                _app("normalize", "normalize", ["t.kafka"], "t.normalize"),
                _app("mongo", "mongo", ["t.normalize"], None)]}


def test_a_new_app_in_the_middle_rewires_the_next_one() -> None:
    new = {"definition": "kafka --topic=raw | normalize --strict=true | file --dir=/o",
           "apps": [OLD["apps"][0], _app("normalize", "normalize", ["t.kafka"], "t.normalize",
                                         options={"strict": "true"}, count=2),
                    _app("file", "file", ["t.normalize"], None, options={"dir": "/o"})]}
    diff = diff_manifests(OLD, new)
    assert diff.lines() == [
        "- kafka --topic=raw | normalize | mongo",
        "+ kafka --topic=raw | normalize --strict=true | file --dir=/o",
        "  = kafka          same",
        "  ~ normalize      changed  options +strict='true'; count 1 → 2",
        "  + file           added  file --dir=/o (in: t.normalize, out: -, ×1)",
        "  - mongo          removed  mongo (in: t.normalize, out: -, ×1)",
    ]
    assert diff.restarted == ["normalize", "file"] and diff.removed == ["mongo"] and not diff.empty
    assert diff.to_json()["apps"][1] == {"label": "normalize", "change": "changed",
                                         "details": ["options +strict='true'", "count 1 → 2"]}


def test_changed_and_dropped_options_and_inputs_are_named() -> None:
    new = {"definition": OLD["definition"],
           "apps": [_app("kafka", "kafka", [], "t.kafka", options={"topic": "raw2"}),
                    OLD["apps"][1], _app("mongo", "mongo", ["t.normalize", "x"], None)]}
    diff = diff_manifests(OLD, new)
    assert diff.lines()[0] == "  kafka --topic=raw | normalize | mongo"
    assert [a.details for a in diff.apps] == [
        ("options topic: 'raw' → 'raw2'",), (), ("inputs t.normalize → t.normalize, x",)]
    assert diff_manifests(OLD, OLD).empty


def test_a_consumer_group_on_the_source_destination_goes_to_the_first_app_and_restarts_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("TUNEFLOW_DB_URL", raising=False)
    registry = Registry(open_state())
    before = build_manifest(parse("s", ":orders > log"), {}, registry, {})
    after = build_manifest(parse("s", ":orders --group=audit > log"), {}, registry, {})
    assert "group" not in before["apps"][0] and after["apps"][0]["group"] == "audit"
    assert diff_manifests(before, after).lines()[-1] == "  ~ log            changed  group - → audit"
