"""Checks a parsed stream against the app registry and the other streams, and names the topics between its apps.

Topics: the output of app label `a` in stream `s` is `s.a`; a named destination `:x` is the topic `x`; a tap
`:s.a` reads the topic `s.a`.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from streams.dsl import AppNode, Destination, StreamDefinition, to_text
from streams.errors import ConfigError
from streams.runtime import loader
from streams.runtime.contract import AppKind, parse_options
from streams.suggest import did_you_mean

Catalog = Mapping[tuple[AppKind, str], str]  # (kind, name) → python:module:attribute

NO_STREAMS: Mapping[str, StreamDefinition] = MappingProxyType({})
BRIDGE_LABEL = "bridge"
SOURCE_DESTINATION_OPTIONS = ("group",)

# (has an input, has an output) -> the only kind that fits there
_KIND_BY_PLACE: dict[tuple[bool, bool], AppKind] = {
    (False, True): "source",
    (True, True): "processor",
    (True, False): "sink",
}


class AppTopics(NamedTuple):
    """Where one app reads and writes: what a deployer hands to the runtime."""

    label: str
    inputs: list[str]
    output: str | None


@dataclass
class AppReport:
    label: str
    app: str
    kind: str
    inputs: list[str]
    outputs: list[str]


@dataclass
class DestinationReport:
    """A named destination across all streams: several writers is a fan-in, several readers a fan-out."""

    name: str
    tap: bool = False
    writers: list[str] = field(default_factory=list)
    readers: list[str] = field(default_factory=list)


@dataclass
class DagReport:
    definition: StreamDefinition
    apps: list[AppReport]
    destinations: dict[str, DestinationReport]

    def to_json(self) -> dict[str, Any]:
        return {
            "stream": self.definition.name,
            "definition": to_text(self.definition),
            "apps": [dataclasses.asdict(app) for app in self.apps],
            "destinations": [dataclasses.asdict(self.destinations[name]) for name in sorted(self.destinations)],
        }


def check(definition: StreamDefinition, existing: Mapping[str, StreamDefinition] = NO_STREAMS,
          catalog: Catalog | None = None) -> DagReport:
    """Raise ConfigError for the first problem found; else report the stream with its apps' kinds resolved.

    `existing` are the streams already defined; one with the same name as `definition` is replaced by it.
    `catalog` is what each (kind, name) is (a `python:module:attribute` URI): the registry's default versions,
    user apps included; the installed built-ins when not given.
    """
    check_labels(definition)
    resolved = resolve_apps(definition, catalog)
    streams = {stream.name: stream for stream in existing.values() if stream.name != definition.name}
    streams[definition.name] = resolved
    if definition.source_destination is not None:
        check_source_options(definition.source_destination)
        check_tap(definition.source_destination, streams)
    if definition.sink_destination is not None:
        check_sink(definition.sink_destination, streams)
    check_cycles(definition.name, streams)
    return DagReport(resolved, _app_reports(resolved), destinations(streams.values()))


# -- labels, kinds and options -------------------------------------------------------------------------------------


def check_labels(definition: StreamDefinition) -> None:
    seen: set[str] = set()
    for node in definition.apps:
        if node.label in seen:
            example = _free_label(node.app, set(definition.labels))
            raise ConfigError(f"duplicate label '{node.label}': give one of them a label, e.g. '{example}: {node.app}'")
        seen.add(node.label)


def _free_label(app: str, taken: set[str]) -> str:
    number = 2
    while f"{app[0]}{number}" in taken:
        number += 1
    return f"{app[0]}{number}"


def resolve_apps(definition: StreamDefinition, catalog: Catalog | None = None) -> StreamDefinition:
    """A copy of `definition` with each app's kind taken from the catalog, by its place when a name has several."""
    apps_by_kind = catalog if catalog is not None else loader.builtin_catalog()
    apps = []
    for index, node in enumerate(definition.apps):
        kind = _resolve_kind(definition, index, apps_by_kind)
        _check_options(node, kind, apps_by_kind)
        apps.append(dataclasses.replace(node, kind=kind))
    return dataclasses.replace(definition, apps=apps)


def _resolve_kind(definition: StreamDefinition, index: int, catalog: Catalog) -> AppKind:
    node = definition.apps[index]
    expected = _expected_kind(definition, index)
    kinds = sorted(kind for kind, name in catalog if name == node.app)
    if not kinds:
        known = sorted({name for kind, name in catalog if expected is None or kind == expected})
        what = f"{expected} app" if expected else "app"
        raise ConfigError(f"unknown {what} '{node.app}'.{did_you_mean(node.app, known)} Known: {', '.join(known)}")
    if expected is not None and expected in kinds:
        return expected
    raise ConfigError(_misplaced(definition, index, kinds))


def _expected_kind(definition: StreamDefinition, index: int) -> AppKind | None:
    return _KIND_BY_PLACE.get(_place(definition, index))


def _place(definition: StreamDefinition, index: int) -> tuple[bool, bool]:
    """(has an input, has an output) of the app at `index`."""
    has_input = index > 0 or definition.source_destination is not None
    has_output = index < len(definition.apps) - 1 or definition.sink_destination is not None
    return has_input, has_output


def _misplaced(definition: StreamDefinition, index: int, kinds: Sequence[str]) -> str:
    node = definition.apps[index]
    has_input, has_output = _place(definition, index)
    what = f"'{node.app}' is a {' and a '.join(kinds)}"
    if not has_input and "source" not in kinds:
        return f"{what}; a stream starts with a source or a named destination (':dest >')"
    if not has_output and "sink" not in kinds:
        return f"{what}; a stream ends with a sink or a named destination ('> :dest')"
    if "source" in kinds and has_input:
        if index == 0 and definition.source_destination is not None:
            return f"{what}; it cannot read from ':{definition.source_destination.name}': a source starts a stream"
        return f"{what}; only the first app of a stream can be a source"
    if index == len(definition.apps) - 1 and definition.sink_destination is not None:
        return f"{what}; it cannot write to ':{definition.sink_destination.name}': a sink ends a stream"
    return f"{what}; only the last app of a stream can be a sink"


def _check_options(node: AppNode, kind: AppKind, catalog: Catalog) -> None:
    app = loader.import_app(catalog[(kind, node.app)])
    try:
        parse_options(app, dict(node.options))
    except ConfigError as exc:
        if node.label == node.app:
            raise
        raise ConfigError(f"{exc} (label '{node.label}')") from None


# -- taps and cycles -----------------------------------------------------------------------------------------------


def check_source_options(destination: Destination) -> None:
    """Of the options SCDF takes on a source destination, only `--group` (the consumer group) means anything."""
    unknown = [key for key in destination.options if key not in SOURCE_DESTINATION_OPTIONS]
    if unknown:
        raise ConfigError(f"unknown option '--{unknown[0]}' on ':{destination.name}': a source destination takes "
                          f"only --group (the consumer group) [default: the stream name]")


def check_tap(destination: Destination, streams: Mapping[str, StreamDefinition]) -> None:
    """A tap `:s.a` reads the output topic of app `a` of the existing stream `s`; a dotted destination that another
    stream writes (`> :s.a`) is a plain destination; other destinations pass."""
    if destination.tap is None:
        return
    stream_name, label = destination.tap
    tapped = streams.get(stream_name)
    where = f"in tap ':{destination.name}'"
    if tapped is None and destination.name in _writers(streams.values()):
        return
    if tapped is None:
        raise ConfigError(f"unknown stream '{stream_name}' {where}.{did_you_mean(stream_name, streams)} A destination"
                          " with exactly one '.' is a tap: ':stream.label' reads an app of an existing stream")
    if label not in tapped.labels:
        raise ConfigError(f"unknown label '{label}' {where}.{did_you_mean(label, tapped.labels)}"
                          f" Labels of stream '{stream_name}': {', '.join(tapped.labels) or 'none'}")
    if label == tapped.labels[-1]:
        raise ConfigError(_untappable(destination, tapped))


def check_sink(destination: Destination, streams: Mapping[str, StreamDefinition]) -> None:
    """A dotted output destination may not be the topic between two apps of an existing stream."""
    if destination.tap is None:
        return
    stream_name, label = destination.tap
    owner = streams.get(stream_name)
    if owner is not None and label in owner.labels:
        raise ConfigError(f"cannot write to ':{destination.name}': it is the output topic of app '{label}' of stream "
                          f"'{stream_name}'; pick another destination name")


def _untappable(destination: Destination, tapped: StreamDefinition) -> str:
    prefix = f"cannot tap ':{destination.name}': app '{tapped.labels[-1]}' is the last app of stream '{tapped.name}'"
    if tapped.sink_destination is not None:
        return f"{prefix} and writes to ':{tapped.sink_destination.name}'; read ':{tapped.sink_destination.name}'"
    return f"{prefix} and has no output"


def check_cycles(name: str, streams: Mapping[str, StreamDefinition]) -> None:
    """Reject stream `name` when data it writes can flow back into it through named destinations or taps."""
    cycle = _find_cycle(name, _edges(streams))
    if cycle is not None:
        raise ConfigError(f"cycle through named destinations: {' -> '.join(cycle)}")


def _edges(streams: Mapping[str, StreamDefinition]) -> dict[str, list[tuple[str, str]]]:
    """stream -> [(destination, stream reading what it writes)], in name order."""
    writers = _writers(streams.values())
    edges: dict[str, list[tuple[str, str]]] = {name: [] for name in streams}
    for reader in sorted(streams):
        source = streams[reader].source_destination
        if source is None:
            continue
        tapped = source.tap[0] if source.tap is not None and source.tap[0] in streams else None
        for writer in [tapped] if tapped is not None else writers.get(source.name, []):
            edges[writer].append((source.name, reader))
    return edges


def _writers(streams: Iterable[StreamDefinition]) -> dict[str, list[str]]:
    writers: dict[str, list[str]] = {}
    for stream in sorted(streams, key=lambda s: s.name):
        if stream.sink_destination is not None:
            writers.setdefault(stream.sink_destination.name, []).append(stream.name)
    return writers


def _find_cycle(start: str, edges: Mapping[str, list[tuple[str, str]]]) -> list[str] | None:
    """The shortest way from `start` back to itself, as [stream, :destination, stream, ...], breadth first."""
    parents: dict[str, tuple[str, str]] = {}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for destination, target in edges[current]:
            if target == start:
                return [*_path_to(current, start, parents), f":{destination}", start]
            if target not in parents:
                parents[target] = (current, destination)
                queue.append(target)
    return None


def _path_to(node: str, start: str, parents: Mapping[str, tuple[str, str]]) -> list[str]:
    path = [node]
    while node != start:
        node, destination = parents[node]
        path[:0] = [node, f":{destination}"]
    return path


# -- report and topics ---------------------------------------------------------------------------------------------


def destinations(streams: Iterable[StreamDefinition]) -> dict[str, DestinationReport]:
    """Every named destination of `streams` with who writes it and who reads it; a tap's writer is the tapped stream."""
    found: dict[str, DestinationReport] = {}
    ordered = sorted(streams, key=lambda s: s.name)
    names = {stream.name for stream in ordered}
    for stream in ordered:
        if stream.sink_destination is not None:
            _entry(found, stream.sink_destination, names).writers.append(stream.name)
        source = stream.source_destination
        if source is not None:
            entry = _entry(found, source, names)
            entry.readers.append(stream.name)
            if entry.tap and not entry.writers:
                entry.writers.append(source.name.partition(".")[0])
    return found


def _entry(found: dict[str, DestinationReport], destination: Destination, streams: set[str]) -> DestinationReport:
    """The report of `destination`: a tap when its name is `stream.label` of one of `streams`."""
    if destination.name not in found:
        tap = destination.tap is not None and destination.tap[0] in streams
        found[destination.name] = DestinationReport(destination.name, tap=tap)
    return found[destination.name]


def _app_reports(definition: StreamDefinition) -> list[AppReport]:
    reports = []
    for index, node in enumerate(definition.apps):
        flow = _app_topics(definition, index)
        outputs = [flow.output] if flow.output is not None else []
        reports.append(AppReport(node.label, node.app, node.kind or "", flow.inputs, outputs))
    return reports


def topics(definition: StreamDefinition) -> list[AppTopics]:
    """(label, input topics, output topic) of each app, in order; a sink's output is None.

    A bridge `:a > :b` has no app of its own: its one entry, labelled 'bridge', copies topic `a` to topic `b`.
    """
    if not definition.apps:
        return _bridge_topics(definition)
    return [_app_topics(definition, index) for index in range(len(definition.apps))]


def _bridge_topics(definition: StreamDefinition) -> list[AppTopics]:
    source, sink = definition.source_destination, definition.sink_destination
    if source is None or sink is None:
        return []
    return [AppTopics(BRIDGE_LABEL, [source.name], sink.name)]


def _app_topics(definition: StreamDefinition, index: int) -> AppTopics:
    apps = definition.apps
    if index > 0:
        inputs = [app_topic(definition.name, apps[index - 1].label)]
    elif definition.source_destination is not None:
        inputs = [definition.source_destination.name]
    else:
        inputs = []
    if index < len(apps) - 1:
        output: str | None = app_topic(definition.name, apps[index].label)
    elif definition.sink_destination is not None:
        output = definition.sink_destination.name
    else:
        output = None
    return AppTopics(apps[index].label, inputs, output)


def app_topic(stream: str, label: str) -> str:
    """The topic app `label` of `stream` writes to when the next app of the stream reads it."""
    return f"{stream}.{label}"
