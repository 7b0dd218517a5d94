"""Deployment properties as in SCDF: `deployer.<app|*>.count`, `.memory`, `.cpu`, `app.<app|*>.<option>`,
`version.<app>`, given as "k=v,k=v" (values with commas in quotes) or as a file of `k=v` lines; and tuneflow's
`deployer.<app>.autoscale=MIN..MAX` with `deployer.<app>.autoscale-lag` and `deployer.<app>.autoscale-cooldown`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streams.errors import ConfigError
from streams.suggest import did_you_mean

_PAIR = re.compile(r"""\s*([^=,\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^,]*)\s*(?:,|$)""")
_MEMORY = re.compile(r"^[1-9][0-9]*[kmgKMG]?$")
_CPU = re.compile(r"^(?:[1-9][0-9]*m|[0-9]+(?:\.[0-9]{1,3})?)$")
_RANGE = re.compile(r"^([1-9][0-9]*)\.\.([1-9][0-9]*)$")
DEPLOYER_KEYS = ("count", "memory", "cpu", "autoscale", "autoscale-lag", "autoscale-cooldown")
DEFAULT_AUTOSCALE_LAG = 1000  # records of lag one instance is expected to carry
DEFAULT_AUTOSCALE_COOLDOWN_S = 30.0


@dataclass
class Autoscale:
    """`deployer.<app>.autoscale=MIN..MAX`: instances follow the consumer lag, `lag` records per instance."""

    min: int
    max: int
    lag: int = DEFAULT_AUTOSCALE_LAG
    cooldown_s: float = DEFAULT_AUTOSCALE_COOLDOWN_S


@dataclass
class AppDeployment:
    """What the properties say about one app of the stream."""

    count: int = 1
    memory: str | None = None
    cpu: str | None = None  # Kubernetes CPU units: 500m, 0.5, 2 (requests and limits on Kubernetes)
    version: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    autoscale: Autoscale | None = None
    autoscale_lag: int | None = None
    autoscale_cooldown_s: float | None = None

    def autoscaling(self) -> Autoscale | None:
        """The autoscale policy with its lag and cool-down, if the app has one."""
        if self.autoscale is None:
            if self.autoscale_lag is not None or self.autoscale_cooldown_s is not None:
                raise ConfigError("deployer.<app>.autoscale-lag and -cooldown go with "
                                  "deployer.<app>.autoscale=MIN..MAX")
            return None
        return Autoscale(self.autoscale.min, self.autoscale.max, self.autoscale_lag or DEFAULT_AUTOSCALE_LAG,
                         DEFAULT_AUTOSCALE_COOLDOWN_S if self.autoscale_cooldown_s is None
                         else self.autoscale_cooldown_s)


def parse_properties(text: str) -> dict[str, str]:
    """`k=v,k2="a,b"` into a dict, in order; a malformed piece is a ConfigError naming it."""
    properties: dict[str, str] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = _PAIR.match(text, position)
        if match is None or match.end() == position:
            raise ConfigError(f"cannot read deployment properties at {text[position:position + 30]!r}: "
                              "write key=value pairs separated by commas (quote values that hold commas)")
        key, value = match.group(1), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        properties[key] = value
        position = match.end()
    return properties


def read_properties_file(path: Path) -> tuple[str, dict[str, str]]:
    """A properties file: one `key=value` per line, `#` comments; returns (raw text, parsed)."""
    try:
        raw = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read properties file {path}: {exc.strerror}") from None
    properties: dict[str, str] = {}
    for number, line in enumerate(raw.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, separator, value = line.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"{path}:{number}: expected key=value, got {line!r}")
        properties[key.strip()] = value.strip()
    return raw, properties


def per_app(properties: dict[str, str], labels: Sequence[str]) -> dict[str, AppDeployment]:
    """The properties resolved per app label; `*` applies to every app and a label's own setting wins."""
    deployments = {label: AppDeployment() for label in labels}
    # `*` settings first, so that a label's own setting overrides them.
    for key, value in sorted(properties.items(), key=lambda item: _split_key(item[0])[1] != "*"):
        prefix, target, name = _split_key(key)
        if prefix not in ("deployer", "app", "version") or not target:
            raise ConfigError(f"unknown deployment property '{key}': use deployer.<app>.count, "
                              "deployer.<app>.memory, deployer.<app>.cpu, app.<app>.<option> or version.<app>")
        if target != "*" and target not in deployments:
            raise ConfigError(f"deployment property '{key}' names no app of the stream.{did_you_mean(target, labels)}"
                              f" Apps: {', '.join(labels)}")
        for label in labels if target == "*" else [target]:
            _apply(deployments[label], prefix, name, value, key)
    return deployments


def _split_key(key: str) -> tuple[str, str, str]:
    """`deployer.normalize.count` → ("deployer", "normalize", "count"); `version.mongo` → ("version", "mongo", "")."""
    prefix, _, rest = key.partition(".")
    target, _, name = rest.partition(".")
    return prefix, target, name


def _apply(deployment: AppDeployment, prefix: str, name: str, value: str, key: str) -> None:
    if prefix == "app":
        if not name:
            raise ConfigError(f"deployment property '{key}' names no option: app.<app>.<option>=value")
        deployment.options[name] = value
    elif prefix == "version":
        if name or key.startswith("version.*"):
            raise ConfigError(f"deployment property '{key}': write version.<app>=<version>")
        deployment.version = value
    elif name == "count":
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"deployment property '{key}' must be a whole number of instances ≥ 1, got {value!r}")
        deployment.count = int(value)
    elif name == "memory":
        if not _MEMORY.match(value):
            raise ConfigError(f"deployment property '{key}' must be a size like 512m or 1g, got {value!r}")
        deployment.memory = value
    elif name == "cpu":
        if not _CPU.match(value) or value.strip("0.m") == "":
            raise ConfigError(f"deployment property '{key}' must be CPU units like 500m, 0.5 or 2, got {value!r}")
        deployment.cpu = value
    elif name == "autoscale":
        bounds = _RANGE.match(value)
        if bounds is None or int(bounds[1]) > int(bounds[2]):
            raise ConfigError(f"deployment property '{key}' must be MIN..MAX instances (1 ≤ MIN ≤ MAX), got {value!r}")
        deployment.autoscale = Autoscale(int(bounds[1]), int(bounds[2]))
    elif name == "autoscale-lag":
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"deployment property '{key}' must be the records of lag per instance (≥ 1), "
                              f"got {value!r}")
        deployment.autoscale_lag = int(value)
    elif name == "autoscale-cooldown":
        try:
            seconds = float(value.removesuffix("s"))
        except ValueError:
            seconds = -1.0
        if seconds < 0:
            raise ConfigError(f"deployment property '{key}' must be seconds (e.g. 30 or 30s), got {value!r}")
        deployment.autoscale_cooldown_s = seconds
    else:
        raise ConfigError(f"unknown deployer property '{key}'.{did_you_mean(name, DEPLOYER_KEYS)} "
                          f"Deployer properties: {', '.join(DEPLOYER_KEYS)}")


def split_by_labels(properties: dict[str, str], labels: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """The properties that still name an app of `labels` (or `*`), and the keys of those that name none."""
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for key, value in properties.items():
        target = _split_key(key)[1]
        if target in ("*", "") or target in labels:
            kept[key] = value
        else:
            dropped.append(key)
    return kept, dropped


def format_properties(properties: dict[str, str]) -> str:
    """The inverse of `parse_properties`: values holding a comma, quote or outer space are quoted."""
    def value(text: str) -> str:
        if not any(c in text for c in ",\"'") and text == text.strip():
            return text
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return ",".join(f"{key}={value(v)}" for key, v in properties.items())


def memory_mb(size: str) -> int:
    """`deployer.<app>.memory` in MiB: 512m → 512, 1g → 1024, 2048k → 2; a bare number is MiB, as in SCDF."""
    number, unit = (int(size[:-1]), size[-1].lower()) if size[-1].isalpha() else (int(size), "")
    factor = {"k": 1 / 1024, "m": 1, "g": 1024, "": 1}[unit]
    return max(1, int(number * factor))
