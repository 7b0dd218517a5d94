"""What changes between two releases of a stream: the definition, and per app label added, removed or changed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The manifest fields of an app that make an update restart it, in the order a diff shows them.
_FIELDS = ("app", "kind", "version", "uri", "options", "inputs", "group", "output", "count", "memory", "cpu",
           "autoscale")


@dataclass(frozen=True)
class AppChange:
    label: str
    change: str  # "added", "removed", "changed" or "same"
    details: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "change": self.change, "details": list(self.details)}


@dataclass(frozen=True)
class ReleaseDiff:
    old_definition: str
    new_definition: str
    apps: tuple[AppChange, ...] = field(default=())

    @property
    def restarted(self) -> list[str]:
        """Labels that get new instances: added or changed."""
        return [a.label for a in self.apps if a.change in ("added", "changed")]

    @property
    def removed(self) -> list[str]:
        return [a.label for a in self.apps if a.change == "removed"]

    @property
    def empty(self) -> bool:
        return all(a.change == "same" for a in self.apps)

    def lines(self) -> list[str]:
        """The diff as a user reads it: the definition as `-`/`+` lines, then one line per app."""
        out = [f"- {self.old_definition}", f"+ {self.new_definition}"] if self.old_definition != self.new_definition \
            else [f"  {self.new_definition}"]
        marks = {"added": "+", "removed": "-", "changed": "~", "same": "="}
        for app in self.apps:
            detail = f"  {'; '.join(app.details)}" if app.details else ""
            out.append(f"  {marks[app.change]} {app.label:<14} {app.change}{detail}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"old_definition": self.old_definition, "new_definition": self.new_definition,
                "apps": [a.to_json() for a in self.apps]}


def diff_manifests(old: dict[str, Any], new: dict[str, Any]) -> ReleaseDiff:
    """Compare two manifests app by app (matched by label): the new order first, then the removed apps."""
    before = {app["label"]: app for app in old["apps"]}
    after = {app["label"]: app for app in new["apps"]}
    changes = []
    for label, app in after.items():
        if label not in before:
            changes.append(AppChange(label, "added", (_describe(app),)))
            continue
        details = tuple(_field_change(name, before[label].get(name), app.get(name)) for name in _FIELDS
                        if before[label].get(name) != app.get(name))
        changes.append(AppChange(label, "changed" if details else "same", details))
    changes.extend(AppChange(label, "removed", (_describe(app),)) for label, app in before.items()
                   if label not in after)
    return ReleaseDiff(old["definition"], new["definition"], tuple(changes))


def _describe(app: dict[str, Any]) -> str:
    options = " ".join(f"--{key}={value}" for key, value in app["options"].items())
    inputs = ", ".join(app["inputs"]) or "-"
    return f"{app['app']} {options}".rstrip() + f" (in: {inputs}, out: {app['output'] or '-'}, ×{app['count']})"


def _field_change(name: str, old: Any, new: Any) -> str:
    if name == "options":
        old, new = old or {}, new or {}
        parts = [f"-{key}" for key in old if key not in new]
        parts += [f"{key}: {old[key]!r} → {value!r}" if key in old else f"+{key}={value!r}"
                  for key, value in new.items() if old.get(key) != value or key not in old]
        return f"options {', '.join(parts)}"
    if name == "inputs":
        return f"inputs {', '.join(old or []) or '-'} → {', '.join(new or []) or '-'}"
    return f"{name} {old if old is not None else '-'} → {new if new is not None else '-'}"
