"""Finds apps by name through the `tuneflow.apps` entry points, the same way for built-ins and third parties."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from streams.errors import ConfigError
from streams.runtime.contract import App, AppKind
from streams.suggest import did_you_mean

GROUP = "tuneflow.apps"
KINDS: tuple[AppKind, ...] = ("source", "processor", "sink")


def available_apps() -> dict[tuple[AppKind, str], str]:
    """(kind, name) → "module:attr" for every installed app; entry point names are `<kind>.<name>`."""
    found: dict[tuple[AppKind, str], str] = {}
    for point in entry_points(group=GROUP):
        kind, _, name = point.name.partition(".")
        if kind in KINDS and name:
            found[(kind, name)] = point.value  # type: ignore[index]
    return found


def builtin_catalog() -> dict[tuple[AppKind, str], str]:
    """(kind, name) → `python:module:attr` URI of every installed app."""
    return {key: f"python:{target}" for key, target in available_apps().items()}


def load_app(name: str, kind: AppKind | None = None) -> type[App[Any]]:
    apps = available_apps()
    matches = [key for key in apps if key[1] == name and (kind is None or key[0] == kind)]
    if not matches:
        known = sorted({n for k, n in apps if kind is None or k == kind})
        suggestion = did_you_mean(name, known)
        what = f"{kind} app" if kind else "app"
        raise ConfigError(f"unknown {what} '{name}'.{suggestion} Known: {', '.join(known)}")
    if len(matches) > 1:
        raise ConfigError(f"'{name}' names a {' and a '.join(k for k, _ in sorted(matches))}: say which kind")
    target = apps[matches[0]]
    module_name, _, attribute = target.partition(":")
    module = __import__(module_name, fromlist=[attribute])
    app: type[App[Any]] = getattr(module, attribute)
    return app


def import_app(uri: str) -> type[App[Any]]:
    """The App class a `python:module:attribute` URI names; ConfigError saying what is wrong otherwise."""
    scheme, _, target = uri.partition(":")
    module_name, _, attribute = target.partition(":")
    if scheme != "python" or not module_name or not attribute:
        raise ConfigError(f"invalid app URI {uri!r}: expected python:module:attribute, e.g. python:sinks.log:LogSink")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name} for {uri}: {exc}") from None
    app = getattr(module, attribute, None)
    if not (isinstance(app, type) and issubclass(app, App) and getattr(app, "kind", None)):
        raise ConfigError(f"{uri} is not a tuneflow app (a SourceApp, ProcessorApp or SinkApp subclass)")
    return app
