"""One SCDF stream mapped to tuneflow: its apps, their options and its deployment properties, and every gap left.

Labels stay as SCDF had them (an unlabelled `mongodb` becomes `mongodb: mongo`), so taps and deployment properties
that name an app keep working. A kafka sink becomes what it is here, an output destination (`> :topic`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from streams.dsl import AppNode, Destination, DslError, StreamDefinition, is_name, parse
from streams.runtime.contract import AppKind
from streams.scdf.apps import Counterpart, Parts, Unmapped, counterpart, general_reason, relaxed

REDACTED = "******"
KAFKA_SINK_TOPIC = {relaxed(name) for name in ("kafka.publisher.topic", "topic")}
MEMORY = re.compile(r"^[1-9][0-9]*[kmgKMG]?$")
PLATFORM_SETTINGS = ("kubernetes.", "local.", "cloudfoundry.")

PARTS_AT = "@"  # where the options composed from parts go among the others, so their order is stable


class Known(Protocol):
    """What tuneflow has: registered apps, and the option names of each (as `relaxed` compares them)."""

    def registered(self, kind: AppKind, app: str) -> bool: ...

    def options(self, kind: AppKind, app: str) -> set[str]: ...


@dataclass(frozen=True)
class ScdfStream:
    """One stream of an SCDF export: its name, DSL, description and deployment properties."""

    name: str
    definition: str
    description: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Gap:
    """Something of an SCDF stream that could not be carried over, and why."""

    what: str  # "app", "option" or "property"
    name: str  # the SCDF app, option or deployment property
    reason: str
    label: str = ""

    def text(self) -> str:
        if self.what == "app":
            named = f"'{self.label}'" if self.label == self.name else f"'{self.label}' ({self.name})"
            return f"app {named}: {self.reason}"
        if self.what == "option":
            return f"option --{self.name} of '{self.label}': {self.reason}"
        return f"deployment property {self.name}: {self.reason}"


@dataclass
class MappedStream:
    """An SCDF stream as tuneflow reads it: `definition` is None when it does not parse or an app has no
    counterpart at all; `gaps` lists everything left behind."""

    source: ScdfStream
    definition: StreamDefinition | None = None
    properties: dict[str, str] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    error: str | None = None

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def runnable(self) -> bool:
        """Every app has a registered counterpart (options may still be missing)."""
        return self.definition is not None and not any(gap.what == "app" for gap in self.gaps)

    @property
    def complete(self) -> bool:
        return self.runnable and not self.gaps


def map_stream(stream: ScdfStream, known: Known) -> MappedStream:
    """Map `stream`'s apps, options and deployment properties to tuneflow's (options already in tuneflow's names,
    as in an export of tuneflow's, are kept)."""
    mapped = MappedStream(stream)
    if not is_name(stream.name):
        mapped.error = f"invalid stream name {stream.name!r}: names start with a letter, then letters, digits, '-'" \
                       " and '_'"
        return mapped
    try:
        parsed = parse(stream.name, stream.definition)
    except DslError as exc:
        mapped.error = str(exc)
        return mapped
    apps: list[AppNode] = []
    sink = parsed.sink_destination
    counterparts: dict[str, Counterpart | None] = {}
    missing = False
    for index, node in enumerate(parsed.apps):
        kind = place(parsed, index)
        if kind == "sink" and node.app == "kafka":
            sink = _kafka_sink(node, mapped.gaps)
            missing = missing or sink is None
            continue
        found = _map_app(node, kind, known, mapped.gaps)
        if found is None:
            missing = True
            continue
        app, counterparts[node.label] = found
        apps.append(app)
    source = _source_destination(parsed.source_destination, mapped.gaps)
    if not missing and (apps or (source is not None and sink is not None)):
        mapped.definition = StreamDefinition(stream.name, "", source, apps, sink)
    mapped.properties = _map_properties(stream.properties, counterparts, known, mapped.gaps)
    return mapped


def place(definition: StreamDefinition, index: int) -> AppKind:
    """The kind an app must be at `index`, as SCDF decides it from the app's place."""
    first = index == 0 and definition.source_destination is None
    last = index == len(definition.apps) - 1 and definition.sink_destination is None
    return "source" if first else "sink" if last else "processor"


def _map_app(node: AppNode, kind: AppKind, known: Known,
             gaps: list[Gap]) -> tuple[AppNode, Counterpart | None] | None:
    try:
        found = counterpart(kind, node.app, node.options)
    except Unmapped as exc:
        if known.registered(kind, node.app):  # a tuneflow app of that very name: taken as it is
            return node, None
        gaps.append(Gap("app", node.app, str(exc), node.label))
        return None
    if not known.registered(kind, found.app):
        gaps.append(Gap("app", node.app, f"maps to '{found.app}', which is not a registered {kind} app here "
                                         f"(`tuneflow app list`)", node.label))
    options = map_options(found, node.options, node.label, known.options(kind, found.app), gaps)
    return AppNode(node.label, found.app, options), found


def map_options(found: Counterpart, options: Mapping[str, str], label: str, native: set[str],
                gaps: list[Gap]) -> dict[str, str]:
    """SCDF options of one app as the counterpart's options; an option already named as the counterpart names it
    (`native`) stays; what has no counterpart goes to `gaps`."""
    mapped: dict[str, str] = {}
    parts: Parts = {}
    for key, value in options.items():
        option = found.options.get(relaxed(key))
        if value == REDACTED:
            gaps.append(Gap("option", key, "its value is redacted in SCDF's export: give it again", label))
        elif option is None and relaxed(key) in native:
            mapped[key] = value
        elif option is None:
            gaps.append(Gap("option", key, found.reasons.get(relaxed(key)) or general_reason(key, found.app), label))
        else:
            try:
                converted = option.convert(value)
            except Unmapped as exc:
                gaps.append(Gap("option", key, str(exc), label))
                continue
            if option.target.startswith("@"):
                parts[option.target[1:]] = (key, converted)
                mapped.setdefault(PARTS_AT, "")
            elif option.target:
                mapped[option.target] = converted
    composed, orphans = found.compose(parts) if found.compose is not None else ({}, {})
    gaps.extend(Gap("option", key, reason, label) for key, reason in orphans.items())
    placed: dict[str, str] = {}
    for name, value in mapped.items():
        if name == PARTS_AT:
            placed.update({key: item for key, item in composed.items() if key not in mapped})
        else:
            placed[name] = value
    return placed


def _kafka_sink(node: AppNode, gaps: list[Gap]) -> Destination | None:
    """SCDF's kafka sink writes to a topic: here that is the output destination `> :topic`."""
    topic = None
    for key, value in node.options.items():
        if relaxed(key) in KAFKA_SINK_TOPIC and topic is None:
            topic = value
        else:
            gaps.append(Gap("option", key, "a kafka sink becomes the output destination '> :topic' here",
                            node.label))
    if topic is None:
        gaps.append(Gap("app", node.app, "a kafka sink without kafka.publisher.topic", node.label))
        return None
    try:
        return parse("s", f"x > :{topic}").sink_destination
    except DslError:
        gaps.append(Gap("app", node.app, f"topic {topic!r} is no destination name here", node.label))
        return None


def _source_destination(source: Destination | None, gaps: list[Gap]) -> Destination | None:
    if source is None:
        return None
    for key in source.options:
        if key != "group":
            gaps.append(Gap("option", key, "SCDF ignores it on a source destination; only --group is read",
                            f":{source.name}"))
    return dataclasses.replace(source, options={k: v for k, v in source.options.items() if k == "group"})


def _map_properties(properties: Mapping[str, str], apps: Mapping[str, Counterpart | None], known: Known,
                    gaps: list[Gap]) -> dict[str, str]:
    """SCDF deployment properties that mean the same here: deployer.<app>.count and .memory, app.<app>.<option>."""
    kept: dict[str, str] = {}
    for key, value in properties.items():
        prefix, _, rest = key.partition(".")
        target, _, setting = rest.partition(".")
        of_the_stream = target == "*" or target in apps
        if prefix == "deployer" and of_the_stream and _same_meaning(setting, value):
            kept[key] = value
        elif prefix == "app" and target in apps and setting:
            found = apps[target]
            if found is None:
                kept[key] = value
                continue
            property_gaps: list[Gap] = []
            options = map_options(found, {setting: value}, target, known.options(found.kind, found.app),
                                  property_gaps)
            gaps.extend(Gap("property", key, gap.reason) for gap in property_gaps)
            kept.update({f"app.{target}.{option}": converted for option, converted in options.items()})
        else:
            gaps.append(Gap("property", key, _property_reason(prefix, target, setting, of_the_stream)))
    return kept


def _same_meaning(setting: str, value: str) -> bool:
    """deployer.<app>.count and .memory mean here what they mean in SCDF, for values both read."""
    if setting == "count":
        return value.isdigit() and int(value) >= 1
    return setting == "memory" and MEMORY.match(value) is not None


def _property_reason(prefix: str, target: str, setting: str, of_the_stream: bool) -> str:
    if prefix in ("deployer", "app") and not of_the_stream:
        return f"names no app of the stream ('{target}')"
    if prefix == "deployer" and setting.startswith(PLATFORM_SETTINGS):
        return f"a {setting.split('.')[0]} deployer setting: tuneflow's deployers have no such setting"
    if prefix == "deployer" and setting in ("count", "memory"):
        return "not a whole number of instances ≥ 1" if setting == "count" else "not a size like 512m or 1g"
    if prefix == "version":
        return "SCDF app versions are Maven artifact versions; tuneflow's come from its own registry"
    if prefix == "app" and target == "*":
        return "app.* options: give the option per app"
    if prefix == "spring":
        return "an SCDF server setting: tuneflow has no such setting"
    return "no such deployment property here"
