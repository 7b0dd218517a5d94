"""The stream DSL: `:in > label: app --key=value | app > :out`, parsed into data and printed back canonically.

It reads what Spring Cloud Data Flow's stream DSL reads, the same way, and refuses the rest with a position:

    definition  := [source '>'] pipeline ['>' destination] | source '>' destination
    source      := destination option*                   (only --group, the consumer group, means something)
    pipeline    := app ('|' app)*
    app         := [label ': '] name option*              (a space follows the label's ':')
    option      := '--' part ('.' part)* '=' value
    value       := bare | "'" ... "'" | '"' ... '"'      (inside '...', '' is one '; a backslash is a backslash)
    destination := ':' part ('.' part)*                   (read as a tap ':stream.label' when that stream exists)

Names (streams, apps, labels) start with a letter; option and destination parts with a letter, digit or '_'.
A bare value ends at whitespace, '|', ';' or '>', except inside quotes it holds (`#jsonPath(payload,'$.a b')`).
Where tuneflow refuses what SCDF accepts, the error names the difference (see README, "The stream DSL").
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from streams.errors import ConfigError

NAME_START = frozenset(string.ascii_letters)
NAME_CHARS = frozenset(string.ascii_letters + string.digits + "-_")
PART_START = frozenset(string.ascii_letters + string.digits + "_")
WHITESPACE = " \t\r\n"
VALUE_ENDS = frozenset(WHITESPACE + "|;>")
QUOTES = "'\""
WILDCARDS = "*/#"

APP_OR_DESTINATION = "an app name or a named destination (':dest') was expected"
APP_EXPECTED = "an app name was expected"
AFTER_APP = "an option (--key=value), '|' or '>' was expected"
NAME_RULE = "names start with a letter, then letters, digits, '-' and '_'"


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
    """A named destination `:name`, i.e. the topic `name`, with the options SCDF allows on a source destination;
    equality ignores `position`."""

    name: str
    position: int = field(default=0, compare=False)
    options: dict[str, str] = field(default_factory=dict)

    @property
    def tap(self) -> tuple[str, str] | None:
        """(stream, label) when the name can read the output of another stream's app: exactly one '.'."""
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
    if not is_name(name):
        raise ConfigError(f"invalid stream name {name!r}: {NAME_RULE}")


def is_name(name: str) -> bool:
    """A valid stream name, app name or label."""
    return bool(name) and name[0] in NAME_START and set(name) <= NAME_CHARS


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
        expected = f"'>' was expected after ':{destination.name}'"
        destination.options = self.options(expected)
        if self.peek() != ">":
            raise self.unexpected(expected)
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
        self.skip_spaces()
        if self.text.startswith("--", self.pos):
            raise DslError("option on an output destination",
                           "SCDF ignores options after '> :dest'; tuneflow refuses them: remove them or set them on "
                           "the app before", self.text, self.pos)
        if self.pos < len(self.text):
            raise self.unexpected(f"nothing may follow the output destination ':{destination.name}'")
        return destination

    def pipeline(self) -> list[AppNode]:
        apps = [self.app(APP_OR_DESTINATION)]
        while self.peek() == "|":
            if self.text.startswith("||", self.pos):
                raise DslError("unexpected '||'", "SCDF's '||' (a list of unbound apps) is not supported: "
                               "connect the apps of a stream with '|'", self.text, self.pos)
            self.pos += 1
            self.skip_spaces()
            apps.append(self.app(APP_EXPECTED))
        return apps

    def app(self, hint: str) -> AppNode:
        start = self.pos
        name = self.name(hint)
        label = name
        if self.peek() == ":":
            self.pos += 1
            if self.peek() and self.peek() not in WHITESPACE:
                raise DslError(f"no space after the label '{label}:'",
                               f"write '{label}: {self.text[self.pos:].split(maxsplit=1)[0]}' (SCDF requires the "
                               "space too)", self.text, self.pos)
            self.skip_spaces()
            name = self.name(f"an app name was expected after the label '{label}:'")
            if self.peek() == ":":
                raise self.unexpected("an app has one label at most")
        return AppNode(label, name, self.options(AFTER_APP), position=start)

    def name(self, hint: str) -> str:
        if self.peek() and self.peek() in NAME_CHARS and self.peek() not in NAME_START:
            raise self.unexpected(f"{hint}; {NAME_RULE}")
        if not self.peek() or self.peek() not in NAME_START:
            raise self.unexpected(hint)
        return self.take(NAME_CHARS)

    def options(self, hint: str) -> dict[str, str]:
        options: dict[str, str] = {}
        while True:
            self.skip_spaces()
            if self.text.startswith("--", self.pos):
                self.option(options)
            elif self.peek() in ("|", ">", ""):
                return options
            else:
                raise self.unexpected(hint)

    def option(self, options: dict[str, str]) -> None:
        start = self.pos
        self.pos += 2
        key = self.key()
        if self.peek() != "=":
            raise self.unexpected(f"'=' and a value were expected after '--{key}'")
        self.pos += 1
        value = self.value(key)
        if self.peek() == ";":
            raise self.unexpected(f"';' ends a value, as in SCDF: quote a value that holds one, "
                                  f"e.g. --{key}='a;b'")
        if key in options:
            raise DslError(f"duplicate option '--{key}'", "give each option once", self.text, start)
        options[key] = value

    def key(self) -> str:
        """`part(.part)*`: each part starts with a letter, digit or '_'; none is empty."""
        start = self.pos
        while True:
            if not self.peek() or self.peek() not in PART_START:
                if self.pos == start:
                    raise self.unexpected("an option name was expected after '--'")
                raise self.unexpected(f"an option name part was expected after '--{self.text[start:self.pos]}': "
                                      "each '.' sits between two parts")
            self.take(NAME_CHARS)
            if self.peek() != ".":
                return self.text[start : self.pos]
            self.pos += 1

    def value(self, key: str) -> str:
        char = self.peek()
        if not char or char in VALUE_ENDS:
            raise self.unexpected(f"a value was expected after '--{key}='; write --{key}='' for an empty value")
        if char in QUOTES:
            return self.quoted(key)
        return self.bare(key)

    def bare(self, key: str) -> str:
        start = self.pos
        end, open_quote = bare_end(self.text, start)
        if open_quote is not None and any(char in VALUE_ENDS for char in self.text[open_quote:]):
            naive_end = next(i for i in range(start, len(self.text)) if self.text[i] in VALUE_ENDS)
            raise DslError(f"unclosed {self.text[open_quote]} in the value of --{key}",
                           f"SCDF would read the rest of the definition into the value; quote the whole value: "
                           f"--{key}={quote_value(self.text[start:naive_end])}", self.text, open_quote)
        self.pos = end
        return self.text[start:end]

    def quoted(self, key: str) -> str:
        start, quote = self.pos, self.text[self.pos]
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == quote == "'" and self.text[self.pos + 1 : self.pos + 2] == "'":
                chars.append("'")
                self.pos += 2
                continue
            self.pos += 1
            if char == quote:
                self.after_quote(start, key)
                return "".join(chars)
            chars.append(char)
        raise DslError("unterminated quoted value", f"the value has no closing {quote!r}", self.text, start)

    def after_quote(self, start: int, key: str) -> None:
        """A quoted value ends at its closing quote: text right after it is refused, where SCDF keeps the quotes."""
        char = self.peek()
        if not char or char in VALUE_ENDS:
            return
        quote = self.text[start]
        if self.text[self.pos - 2] == "\\":
            hint = ("a backslash inside quotes is a plain character, as in SCDF, so that quote closed the value: "
                    "write a ' inside a single-quoted value as '', e.g. --x='it''s'")
        elif quote == char == '"':
            hint = "a double-quoted value cannot hold '\"': put the value in single quotes, e.g. --x='say \"hi\"'"
        else:
            scdf = self.text[start : scdf_quoted_end(self.text, start)]
            hint = (f"text after a closing quote is refused (SCDF would keep the quotes in the value: {scdf}); "
                    f"quote the whole value: --{key}={quote_value(scdf)}")
        raise self.unexpected(hint)

    def destination(self) -> Destination:
        start = self.pos
        self.pos += 1
        name = self.take(NAME_CHARS | {"."})
        if self.peek() and self.peek() in WILDCARDS:
            raise DslError(f"unexpected {self.peek()!r} in a destination name",
                           "SCDF's destination wildcards ('*', '/', '#') are not supported: a tuneflow destination is "
                           "one Kafka topic, named with letters, digits, '-', '_' and '.'", self.text, self.pos)
        if not name:
            raise self.unexpected("a destination name was expected after ':'")
        parts = name.split(".")
        if not all(parts):
            raise DslError(f"invalid destination name ':{name}'", "each '.' must sit between two name parts",
                           self.text, start)
        if any(part[0] not in PART_START for part in parts):
            raise DslError(f"invalid destination name ':{name}'", "each part starts with a letter, digit or '_'",
                           self.text, start)
        return Destination(name, start)

    # -- characters --------------------------------------------------------------------------------------------

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in WHITESPACE:
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


def bare_end(text: str, start: int) -> tuple[int, int | None]:
    """Where an unquoted value starting at `start` ends, as SCDF reads it, and the position of a quote left open.

    A quote (either kind) opens a stretch that whitespace, '|', ';' and '>' do not end; the next quote closes it.
    """
    open_quote: int | None = None
    position = start
    while position < len(text):
        char = text[position]
        if char in QUOTES:
            open_quote = position if open_quote is None else None
        elif open_quote is None and char in VALUE_ENDS:
            break
        position += 1
    return position, open_quote


def scdf_quoted_end(text: str, start: int) -> int:
    """Where SCDF ends a value that starts with a quote: at the first value end outside that kind of quote."""
    quote, inside, position = text[start], True, start + 1
    while position < len(text):
        char = text[position]
        if char == quote == "'" and text[position + 1 : position + 2] == "'":
            position += 2
            continue
        if char == quote:
            inside = not inside
        elif not inside and char in VALUE_ENDS:
            break
        position += 1
    return position


def to_text(definition: StreamDefinition) -> str:
    """The canonical spelling: single spaces, labels only when they differ from the app, minimal quoting."""
    segments: list[str] = []
    if definition.source_destination is not None:
        segments.append(destination_text(definition.source_destination))
    if definition.apps:
        segments.append(" | ".join(app_text(node) for node in definition.apps))
    if definition.sink_destination is not None:
        segments.append(destination_text(definition.sink_destination))
    return " > ".join(segments)


def destination_text(destination: Destination) -> str:
    return f":{destination.name}{options_text(destination.options)}"


def app_text(node: AppNode) -> str:
    label = f"{node.label}: " if node.label != node.app else ""
    return f"{label}{node.app}{options_text(node.options)}"


def options_text(options: dict[str, str]) -> str:
    return "".join(f" --{key}={quote_value(value)}" for key, value in options.items())


def quote_value(value: str) -> str:
    """`value` as the DSL spells it, SCDF's way: bare when it reads back whole, else in single quotes with each
    ' doubled."""
    if value and value[0] not in QUOTES and bare_end(value, 0) == (len(value), None):
        return value
    return "'" + value.replace("'", "''") + "'"
