"""The stream DSL: `:in > label: app --key=value | app > :out`, parsed into data and printed back canonically.

Grammar (whitespace between tokens is free; a value holds no whitespace or '|' unless quoted):

    definition  := [destination '>'] pipeline ['>' destination] | destination '>' destination
    pipeline    := app ('|' app)*
    app         := [label ':'] name ('--' key '=' value)*
    value       := bare | "'" ... "'" | '"' ... '"'      (inside quotes, \\<quote> and \\\\ are escapes)
    destination := ':' part ('.' part)*                   (exactly one '.' reads a tap ':stream.label')
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from streams.errors import ConfigError

NAME_CHARS = frozenset(string.ascii_letters + string.digits + "-_")
KEY_CHARS = NAME_CHARS | {"."}
DESTINATION_CHARS = KEY_CHARS
QUOTES = "'\""

APP_OR_DESTINATION = "an app name or a named destination (':dest') was expected"
APP_EXPECTED = "an app name was expected"
AFTER_APP = "an option (--key=value), '|' or '>' was expected"


class DslError(ConfigError):
    """A definition that does not parse: what is wrong, where (0-based `position`), and a caret pointing at it."""

    def __init__(self, problem: str, hint: str, definition: str, position: int) -> None:
        self.problem = problem
        self.hint = hint
        self.definition = definition
        self.position = position
        super().__init__(_render(problem, hint, definition, position))

    @property
    def line(self) -> int:
        """1-based line of `position`."""
        return self.definition.count("\n", 0, self.position) + 1

    @property
    def column(self) -> int:
        """1-based column of `position` within its line."""
        return self.position - self.definition.rfind("\n", 0, self.position)


def _render(problem: str, hint: str, definition: str, position: int) -> str:
    start = definition.rfind("\n", 0, position) + 1
    end = definition.find("\n", start)
    line = definition[start:] if end == -1 else definition[start:end]
    shown = "".join(" " if char.isspace() else char for char in line)
    where = f"position {position}"
    if "\n" in definition:
        line_number = definition.count("\n", 0, position) + 1
        where = f"{where} (line {line_number}, column {position - start + 1})"
    return f"{problem} at {where}: {hint}\n  {shown}\n  {' ' * (position - start)}^"


@dataclass
class Destination:
    """A named destination `:name`, i.e. the topic `name`; equality ignores `position`."""

    name: str
    position: int = field(default=0, compare=False)

    @property
    def tap(self) -> tuple[str, str] | None:
        """(stream, label) when the name reads the output of another stream's app: exactly one '.'."""
        stream, dot, label = self.name.partition(".")
        return (stream, label) if dot and "." not in label else None


@dataclass
class AppNode:
    """One app of a stream; `kind` is None until the DAG check resolves it. Equality ignores `position`."""

    label: str
    app: str
    options: dict[str, str] = field(default_factory=dict)
    kind: str | None = None
    position: int = field(default=0, compare=False)


@dataclass
class StreamDefinition:
    """A parsed stream. Equality is structural: the original `text` and all positions are ignored."""

    name: str
    text: str = field(compare=False)
    source_destination: Destination | None
    apps: list[AppNode]
    sink_destination: Destination | None

    @property
    def labels(self) -> list[str]:
        return [node.label for node in self.apps]


def parse(name: str, text: str) -> StreamDefinition:
    """Parse the definition `text` of stream `name`; DslError says what is wrong and where."""
    check_stream_name(name)
    source, apps, sink = _Parser(text).definition()
    return StreamDefinition(name, text, source, apps, sink)


def check_stream_name(name: str) -> None:
    if not name or not set(name) <= NAME_CHARS:
        raise ConfigError(f"invalid stream name {name!r}: use letters, digits, '-' and '_'")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def definition(self) -> tuple[Destination | None, list[AppNode], Destination | None]:
        self.skip_spaces()
        source = self.source_destination() if self.peek() == ":" else None
        if source is not None and self.peek() == ":":
            apps: list[AppNode] = []
        else:
            apps = self.pipeline()
        sink = None
        if (source is not None and not apps) or self.peek() == ">":
            sink = self.sink_destination()
        return source, apps, sink

    # -- sections ----------------------------------------------------------------------------------------------

    def source_destination(self) -> Destination:
        destination = self.destination()
        self.skip_spaces()
        if self.peek() != ">":
            raise self.unexpected(f"'>' was expected after ':{destination.name}'")
        self.pos += 1
        self.skip_spaces()
        return destination

    def sink_destination(self) -> Destination:
        if self.peek() == ">":
            self.pos += 1
            self.skip_spaces()
        if self.peek() != ":":
            raise self.unexpected("a named destination (':dest') was expected after '>'")
        destination = self.destination()
        if destination.tap is not None:
            raise DslError(f"cannot write to the tap ':{destination.name}'",
                           "a name with exactly one '.' reads an app's output (':stream.label'); pick another name",
                           self.text, destination.position)
        self.skip_spaces()
        if self.pos < len(self.text):
            raise self.unexpected(f"nothing may follow the output destination ':{destination.name}'")
        return destination

    def pipeline(self) -> list[AppNode]:
        apps = [self.app(APP_OR_DESTINATION)]
        while self.peek() == "|":
            self.pos += 1
            self.skip_spaces()
            apps.append(self.app(APP_EXPECTED))
        return apps

    def app(self, hint: str) -> AppNode:
        start = self.pos
        name = self.take(NAME_CHARS)
        if not name:
            raise self.unexpected(hint)
        label = name
        if self.peek() == ":":
            self.pos += 1
            self.skip_spaces()
            name = self.take(NAME_CHARS)
            if not name:
                raise self.unexpected(f"an app name was expected after the label '{label}:'")
        return AppNode(label, name, self.options(), position=start)

    def options(self) -> dict[str, str]:
        options: dict[str, str] = {}
        while True:
            self.skip_spaces()
            if self.text.startswith("--", self.pos):
                self.option(options)
            elif self.peek() in ("|", ">", ""):
                return options
            else:
                raise self.unexpected(AFTER_APP)

    def option(self, options: dict[str, str]) -> None:
        start = self.pos
        self.pos += 2
        key = self.take(KEY_CHARS)
        if not key:
            raise self.unexpected("an option name was expected after '--'")
        if self.peek() != "=":
            raise self.unexpected(f"'=' and a value were expected after '--{key}'")
        self.pos += 1
        value = self.value(key)
        if key in options:
            raise DslError(f"duplicate option '--{key}'", "give each option once", self.text, start)
        options[key] = value

    def value(self, key: str) -> str:
        if self.peek() and self.peek() in QUOTES:
            return self.quoted()
        start = self.pos
        while self.pos < len(self.text) and not _ends_bare_value(self.text[self.pos]):
            self.pos += 1
        if self.pos == start:
            raise self.unexpected(f"a value was expected after '--{key}='; write --{key}=\"\" for an empty value")
        return self.text[start : self.pos]

    def quoted(self) -> str:
        start, quote = self.pos, self.text[self.pos]
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.text[self.pos + 1 : self.pos + 2] in (quote, "\\"):
                chars.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if char == quote:
                self.after_quote()
                return "".join(chars)
            chars.append(char)
        raise DslError("unterminated quoted value", f"the value has no closing {quote!r}", self.text, start)

    def after_quote(self) -> None:
        if self.peek() and not self.peek().isspace() and self.peek() not in "|>":
            raise self.unexpected("a space, '|' or '>' was expected after the closing quote")

    def destination(self) -> Destination:
        start = self.pos
        self.pos += 1
        name = self.take(DESTINATION_CHARS)
        if not name:
            raise self.unexpected("a destination name was expected after ':'")
        if name.startswith(".") or name.endswith(".") or ".." in name:
            raise DslError(f"invalid destination name ':{name}'", "each '.' must sit between two name parts",
                           self.text, start)
        return Destination(name, start)

    # -- characters --------------------------------------------------------------------------------------------

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def take(self, allowed: frozenset[str]) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in allowed:
            self.pos += 1
        return self.text[start : self.pos]

    def unexpected(self, hint: str) -> DslError:
        if self.pos < len(self.text):
            return DslError(f"unexpected {self.text[self.pos]!r}", hint, self.text, self.pos)
        return DslError("unexpected end of definition", hint, self.text, self.pos)


def _ends_bare_value(char: str) -> bool:
    return char.isspace() or char == "|"


def to_text(definition: StreamDefinition) -> str:
    """The canonical spelling: single spaces, labels only when they differ from the app, minimal quoting."""
    segments: list[str] = []
    if definition.source_destination is not None:
        segments.append(f":{definition.source_destination.name}")
    if definition.apps:
        segments.append(" | ".join(app_text(node) for node in definition.apps))
    if definition.sink_destination is not None:
        segments.append(f":{definition.sink_destination.name}")
    return " > ".join(segments)


def app_text(node: AppNode) -> str:
    label = f"{node.label}: " if node.label != node.app else ""
    options = "".join(f" --{key}={quote_value(value)}" for key, value in node.options.items())
    return f"{label}{node.app}{options}"


def quote_value(value: str) -> str:
    """`value` as the DSL spells it: bare when it can be, else in double quotes with '\\' and '"' escaped."""
    if value and value[0] not in QUOTES and not any(_ends_bare_value(char) for char in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
