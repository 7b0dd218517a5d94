"""Prometheus file-based service discovery: one `<stream>.json` per stream, listing every instance that runs.

Prometheus (`deploy/prometheus/prometheus.yml`, job `tuneflow`) re-reads these files every few seconds, so an
instance is scraped as soon as it listens and forgotten once it stops. The directory is
`$TUNEFLOW_PROMETHEUS_TARGETS` (the stack exports it), else `<home>/prometheus/targets`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

TARGETS_VARIABLE = "TUNEFLOW_PROMETHEUS_TARGETS"


class Target(Protocol):
    stream: str
    label: str
    index: int
    port: int
    release: int


def targets_dir(home: Path) -> Path:
    configured = os.environ.get(TARGETS_VARIABLE)
    return Path(configured) if configured else home / "prometheus" / "targets"


def target_groups(instances: Sequence[Target]) -> list[dict[str, Any]]:
    """One group per instance: its address and the labels its own metrics carry (stream, app, instance)."""
    return [{"targets": [f"127.0.0.1:{i.port}"],
             "labels": {"stream": i.stream, "app": i.label, "instance": str(i.index), "release": str(i.release)}}
            for i in sorted(instances, key=lambda i: (i.label, i.index, i.release))]


def write_targets(directory: Path, stream: str, instances: Sequence[Target]) -> Path:
    """Replace the stream's target file atomically (Prometheus never reads half a file); none left: remove it."""
    return write_target_file(directory, stream, target_groups(instances))


def write_target_file(directory: Path, name: str, groups: list[dict[str, Any]]) -> Path:
    path = directory / f"{name}.json"
    if not groups:
        path.unlink(missing_ok=True)
        return path
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f".{name}.json.partial"
    partial.write_bytes(orjson.dumps(groups, option=orjson.OPT_INDENT_2))
    os.replace(partial, path)
    return path
