"""The app registry: built-in apps (pre-registered) and user apps, by kind, name and version, in the state database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticUndefined

from streams import __version__
from streams.errors import ConfigError
from streams.runtime.contract import OUTPUT_OPTIONS, App, AppKind
from streams.runtime.loader import available_apps, import_app
from streams.state import AppRecord, StateStore


@dataclass(frozen=True)
class AppOption:
    """One `--option` of an app, as its options model declares it."""

    name: str
    type: str
    required: bool
    default: Any
    description: str


class Registry:
    def __init__(self, state: StateStore) -> None:
        self.state = state
        self._seed_builtins()

    def _seed_builtins(self) -> None:
        """Every installed built-in app is registered at the platform's version, once."""
        registered = {(a.kind, a.name, a.version) for a in self.state.list_apps()}
        for (kind, name), target in sorted(available_apps().items()):
            if (kind, name, __version__) not in registered:
                self.state.register_app(kind, name, f"python:{target}", version=__version__)

    def register(self, kind: str, name: str, uri: str, version: str | None = None, default: bool | None = None,
                 force: bool = False) -> AppRecord:
        """Register after checking that the URI imports an app of that kind (a typo fails now, not at deploy)."""
        app = import_app(uri)
        if app.kind != kind:
            raise ConfigError(f"{uri} is a {app.kind} app, not a {kind}")
        return self.state.register_app(kind, name, uri, version=version, default=default, force=force)

    def catalog(self) -> dict[tuple[AppKind, str], str]:
        """What a stream definition may name: each (kind, name) as the URI of its default version."""
        return {(a.kind, a.name): a.uri for a in self.state.list_apps() if a.is_default}  # type: ignore[misc]

    def load(self, name: str, kind: str | None = None, version: str | None = None) -> tuple[AppRecord, type[App[Any]]]:
        record = self.state.get_app(name, kind=kind, version=version)
        return record, import_app(record.uri)


def app_options(app: type[App[Any]]) -> list[AppOption]:
    """The app's options with type, default and documentation, from its options model."""
    options = []
    for field_name, info in app.options_model.model_fields.items():
        if field_name in OUTPUT_OPTIONS and app.kind == "sink":
            continue  # a sink writes no records of its own
        default = None if info.default is PydanticUndefined else info.default
        if info.default_factory is not None:
            default = "(computed)"
        annotation = info.annotation
        type_name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        options.append(AppOption(name=info.alias or field_name, type=type_name, required=info.is_required(),
                                 default=default, description=info.description or ""))
    return options
