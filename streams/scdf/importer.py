"""`tuneflow stream import`: map every stream of an SCDF export, check the mapped ones against the registry and each
other (writers and tapped streams first), create those that may be created, and report every stream."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streams.dsl import StreamDefinition, to_text
from streams.errors import ConfigError
from streams.platform.manifest import build_manifest
from streams.platform.properties import format_properties
from streams.platform.service import StreamService
from streams.registry import Registry, app_options
from streams.runtime.contract import AppKind
from streams.scdf.apps import relaxed
from streams.scdf.mapping import Gap, MappedStream, ScdfStream, map_stream

CREATED, WOULD_CREATE, LEFT_OUT = "created", "would be created", "left out"


@dataclass
class StreamImport:
    """What became of one SCDF stream: its status, why it was left out, and its gaps."""

    mapped: MappedStream
    status: str
    reason: str = ""

    @property
    def definition(self) -> str | None:
        return to_text(self.mapped.definition) if self.mapped.definition is not None else None

    def lines(self) -> list[str]:
        head = f"{self.mapped.name}: {self.status}" + (f": {self.reason}" if self.reason else "")
        lines = [head, f"  scdf:     {self.mapped.source.definition}"]
        if self.definition is not None:
            lines.append(f"  tuneflow: {self.definition}")
        if self.mapped.properties:
            lines.append(f"  deployment properties: {format_properties(self.mapped.properties)}")
        if self.mapped.error is not None and self.mapped.error != self.reason:
            lines += [f"  {line}" for line in self.mapped.error.splitlines()]
        lines += [f"  not mapped: {gap.text()}" for gap in self.mapped.gaps]
        return lines

    def to_json(self) -> dict[str, Any]:
        return {"name": self.mapped.name, "status": self.status, "reason": self.reason,
                "scdf_definition": self.mapped.source.definition, "definition": self.definition,
                "deployment_properties": self.mapped.properties, "error": self.mapped.error,
                "not_mapped": [_gap_json(gap) for gap in self.mapped.gaps]}


def _gap_json(gap: Gap) -> dict[str, str]:
    return {"what": gap.what, "label": gap.label, "name": gap.name, "reason": gap.reason, "text": gap.text()}


class RegisteredApps:
    """The apps of tuneflow's registry and their option names, for the mapping."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._apps = {(app.kind, app.name) for app in registry.state.list_apps()}

    def registered(self, kind: AppKind, app: str) -> bool:
        return (kind, app) in self._apps

    def options(self, kind: AppKind, app: str) -> set[str]:
        if not self.registered(kind, app):
            return set()
        return {relaxed(option.name) for option in app_options(self._registry.load(app, kind=kind)[1])}


def import_streams(service: StreamService, streams: Sequence[ScdfStream], partial: bool = False,
                   dry_run: bool = False) -> list[StreamImport]:
    """Map, check and (unless `dry_run`) create the streams; without `partial` only fully mapped ones."""
    known = RegisteredApps(service.registry)
    mapped = [map_stream(stream, known) for stream in streams]
    existing = service.definitions()
    defined: dict[str, StreamDefinition] = dict(existing)
    results: dict[str, StreamImport] = {}
    ordered, needs = _writers_first(mapped)
    for stream in ordered:
        left_out = sorted(name for name in needs[stream.name] if name in results and results[name].status == LEFT_OUT)
        if left_out and stream.error is None:
            results[stream.name] = StreamImport(stream, LEFT_OUT, f"reads from '{left_out[0]}', which is left out")
            continue
        results[stream.name] = _import_one(service, stream, existing, defined, partial, dry_run)
    return [results[stream.name] for stream in mapped]


def _import_one(service: StreamService, stream: MappedStream, existing: Mapping[str, StreamDefinition],
                defined: dict[str, StreamDefinition], partial: bool, dry_run: bool) -> StreamImport:
    if stream.error is not None:
        return StreamImport(stream, LEFT_OUT, "does not parse" if "\n" in stream.error else stream.error)
    if stream.name in existing:
        return StreamImport(stream, LEFT_OUT, "a stream of that name exists here")
    if not stream.runnable or stream.definition is None:
        return StreamImport(stream, LEFT_OUT, "not every app could be mapped")
    if not stream.complete and not partial:
        return StreamImport(stream, LEFT_OUT, "partly mapped (--partial creates it without what is listed)")
    text = to_text(stream.definition)
    try:
        build_manifest(stream.definition, stream.properties, service.registry, {**defined, stream.name:
                                                                                stream.definition})
    except ConfigError as exc:
        return StreamImport(stream, LEFT_OUT, f"does not validate: {exc}")
    defined[stream.name] = stream.definition
    status = WOULD_CREATE if dry_run else CREATED
    reason = "" if stream.complete else "without what is listed"
    if not dry_run:
        service.create(stream.name, text, stream.source.description)
        if stream.properties:
            service.state.save_deployment_properties(stream.name, format_properties(stream.properties),
                                                     stream.properties)
    return StreamImport(stream, status, reason)


def _writers_first(streams: Sequence[MappedStream]) -> tuple[list[MappedStream], dict[str, set[str]]]:
    """The streams in file order, except that a stream comes after the ones of the file it reads from (through a
    destination or a tap), so each checks against what it needs; a cycle keeps file order (and fails its check).
    Also, per stream, the streams of the file it reads from."""
    names = {stream.name for stream in streams}
    writers: dict[str, set[str]] = {}
    for stream in streams:
        sink = stream.definition.sink_destination if stream.definition is not None else None
        if sink is not None:
            writers.setdefault(sink.name, set()).add(stream.name)
    needs = {stream.name: (_reads_from(stream, writers) & names) - {stream.name} for stream in streams}
    ordered: list[MappedStream] = []
    placed: set[str] = set()
    remaining = list(streams)
    while remaining:
        ready = [s for s in remaining if not needs[s.name] - placed] or remaining[:1]
        ordered.append(ready[0])
        placed.add(ready[0].name)
        remaining.remove(ready[0])
    return ordered, needs


def _reads_from(stream: MappedStream, writers: Mapping[str, set[str]]) -> set[str]:
    source = stream.definition.source_destination if stream.definition is not None else None
    if source is None:
        return set()
    tapped = {source.tap[0]} if source.tap is not None else set()
    return set(writers.get(source.name, set())) | tapped


def summary(results: Sequence[StreamImport], dry_run: bool) -> str:
    done = sum(result.status in (CREATED, WOULD_CREATE) for result in results)
    verb = "would be created (dry run: nothing was)" if dry_run else "created"
    return f"{done} of {len(results)} stream{'s' if len(results) != 1 else ''} {verb}"
