"""The stream DSL: what each definition parses into, the exact message for each mistake, and print/parse round trips."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.dsl import AppNode, Destination, DslError, StreamDefinition, parse, to_text
from streams.errors import ConfigError

NAME_ALPHABET = string.ascii_letters + string.digits + "-_"
QUICK = settings(max_examples=300, deadline=None, database=None)


def app(name: str, label: str | None = None, options: dict[str, str] | None = None) -> AppNode:
    return AppNode(label or name, name, options or {})


def stream(apps: list[AppNode], source: str | None = None, sink: str | None = None) -> StreamDefinition:
    return StreamDefinition("s", "", Destination(source) if source else None, apps, Destination(sink) if sink else None)


HTTP_LOG = stream([app("http"), app("log")])

VALID: list[tuple[str, StreamDefinition]] = [
    ("http | log", HTTP_LOG),
    ("  http|log  ", HTTP_LOG),
    ("http\n  | log\t", HTTP_LOG),
    ("http --port=8080 | normalize | mongo --collection=tracks",
     stream([app("http", options={"port": "8080"}), app("normalize"), app("mongo", options={"collection": "tracks"})])),
    ("in: kafka --topic=raw | n2: normalize | mongo",
     stream([app("kafka", "in", {"topic": "raw"}), app("normalize", "n2"), app("mongo")])),
    ("normalize: normalize | log", stream([app("normalize"), app("log")])),
    ("normalize | normalize", stream([app("normalize"), app("normalize")])),
    ("cdc-postgres --slot_name=tf_1 | dual-write", stream([app("cdc-postgres", options={"slot_name": "tf_1"}),
                                                         app("dual-write")])),
    ("a --k.sub-key_2=v | b", stream([app("a", options={"k.sub-key_2": "v"}), app("b")])),
    ("a --x=raw.tracks --y=2 | b", stream([app("a", options={"x": "raw.tracks", "y": "2"}), app("b")])),
    ("a --x=1|b", stream([app("a", options={"x": "1"}), app("b")])),
    ("a --x=a,b=c | b", stream([app("a", options={"x": "a,b=c"}), app("b")])),
    ("a --x='a>b;c' | b", stream([app("a", options={"x": "a>b;c"}), app("b")])),
    ("a --x=O'Brien", stream([app("a", options={"x": "O'Brien"})])),
    ("a --x='a|b' | b", stream([app("a", options={"x": "a|b"}), app("b")])),
    ('a --x="a | b, c; d" | b', stream([app("a", options={"x": "a | b, c; d"}), app("b")])),
    ("a --x=\"it's\" | b", stream([app("a", options={"x": "it's"}), app("b")])),
    ("a --x='say \"hi\"' | b", stream([app("a", options={"x": 'say "hi"'}), app("b")])),
    ("a --x='it''s' | b", stream([app("a", options={"x": "it's"}), app("b")])),
    (r'a --x="C:\dir\\" | b', stream([app("a", options={"x": "C:\\dir\\\\"}), app("b")])),
    (r"a --x='a\' | b", stream([app("a", options={"x": "a\\"}), app("b")])),
    ('a --x="" --y=\'\' | b', stream([app("a", options={"x": "", "y": ""}), app("b")])),
    ("a --x='v'|b --y='w'> :out", stream([app("a", options={"x": "v"}), app("b", options={"y": "w"})], sink="out")),
    (":raw > normalize | mongo", stream([app("normalize"), app("mongo")], source="raw")),
    ("http > :raw", stream([app("http")], sink="raw")),
    (":raw>log", stream([app("log")], source="raw")),
    (":in > normalize > :out", stream([app("normalize")], source="in", sink="out")),
    (":a > :b", stream([], source="a", sink="b")),
    (":tracks.normalize > log", stream([app("log")], source="tracks.normalize")),
    (":a.b.c > log", stream([app("log")], source="a.b.c")),
    ("http | normalize > :out-1_x.y.z", stream([app("http"), app("normalize")], sink="out-1_x.y.z")),
]

INVALID: list[tuple[str, tuple[str, str, str]]] = [
    ("", ("unexpected end of definition at position 0: an app name or a named destination (':dest') was expected",
          "  ",
          "  ^")),
    ("   ", ("unexpected end of definition at position 3: an app name or a named destination (':dest') was expected",
             "     ",
             "     ^")),
    ("http | | log", ("unexpected '|' at position 7: an app name was expected",
                      "  http | | log",
                      "         ^")),
    ("| log", ("unexpected '|' at position 0: an app name or a named destination (':dest') was expected",
               "  | log",
               "  ^")),
    ("> :x", ("unexpected '>' at position 0: an app name or a named destination (':dest') was expected",
              "  > :x",
              "  ^")),
    ("http | log |", ("unexpected end of definition at position 12: an app name was expected",
                      "  http | log |",
                      "              ^")),
    (":a", ("unexpected end of definition at position 2: '>' was expected after ':a'",
            "  :a",
            "    ^")),
    (":a | log", ("unexpected '|' at position 3: '>' was expected after ':a'",
                  "  :a | log",
                  "     ^")),
    (":a >", ("unexpected end of definition at position 4: an app name or a named destination (':dest') was expected",
              "  :a >",
              "      ^")),
    ("http >", ("unexpected end of definition at position 6: a named destination (':dest') was expected after '>'",
                "  http >",
                "        ^")),
    ("http > log", ("unexpected 'l' at position 7: a named destination (':dest') was expected after '>'",
                    "  http > log",
                    "         ^")),
    (":a > :b > :c", ("unexpected '>' at position 8: nothing may follow the output destination ':b'",
                      "  :a > :b > :c",
                      "          ^")),
    ("http | log > :out | x", ("unexpected '|' at position 18: nothing may follow the output destination ':out'",
                               "  http | log > :out | x",
                               "                    ^")),
    ("http | a | :d | log", ("unexpected ':' at position 11: an app name was expected",
                             "  http | a | :d | log",
                             "             ^")),
    (": > log", ("unexpected ' ' at position 1: a destination name was expected after ':'",
                 "  : > log",
                 "   ^")),
    (":a. > log", ("invalid destination name ':a.' at position 0: each '.' must sit between two name parts",
                   "  :a. > log",
                   "  ^")),
    ("http > :a..b", ("invalid destination name ':a..b' at position 7: each '.' must sit between two name parts",
                      "  http > :a..b",
                      "         ^")),
    ("n: | log", ("unexpected '|' at position 3: an app name was expected after the label 'n:'",
                  "  n: | log",
                  "     ^")),
    ("a: b: c | d", ("unexpected ':' at position 4: an app has one label at most",
                     "  a: b: c | d",
                     "      ^")),
    ("ht$p | log", ("unexpected '$' at position 2: an option (--key=value), '|' or '>' was expected",
                    "  ht$p | log",
                    "    ^")),
    ("http -p=1 | log", ("unexpected '-' at position 5: an option (--key=value), '|' or '>' was expected",
                         "  http -p=1 | log",
                         "       ^")),
    ("http 8080 | log", ("unexpected '8' at position 5: an option (--key=value), '|' or '>' was expected",
                         "  http 8080 | log",
                         "       ^")),
    ("http --=1 | log", ("unexpected '=' at position 7: an option name was expected after '--'",
                         "  http --=1 | log",
                         "         ^")),
    ("http --port | log", ("unexpected ' ' at position 11: '=' and a value were expected after '--port'",
                           "  http --port | log",
                           "             ^")),
    ("http --port", ("unexpected end of definition at position 11: '=' and a value were expected after '--port'",
                     "  http --port",
                     "             ^")),
    ("http --port= | log", ("unexpected ' ' at position 12: a value was expected after '--port='; write --port=''"
                            " for an empty value",
                            "  http --port= | log",
                            "              ^")),
    ("http --port=1 --port=2 | log", ("duplicate option '--port' at position 14: give each option once",
                                      "  http --port=1 --port=2 | log",
                                      "                ^")),
    ('http --x="abc | log', ("unterminated quoted value at position 9: the value has no closing '\"'",
                             '  http --x="abc | log',
                             "           ^")),
    ("http --x='a'b | log", ("unexpected 'b' at position 12: text after a closing quote is refused (SCDF would keep"
                             " the quotes in the value: 'a'b); quote the whole value: --x='''a''b'",
                             "  http --x='a'b | log",
                             "              ^")),
    ("http |\n  tr@nsform |\n  log", ("unexpected '@' at position 11 (line 2, column 5): an option (--key=value), "
                                      "'|' or '>' was expected",
                                      "    tr@nsform |",
                                      "      ^")),
    ("http\t--x=\"a\tb\" $", ("unexpected '$' at position 15: an option (--key=value), '|' or '>' was expected",
                              '  http --x="a b" $',
                              "                 ^")),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[text for text, _ in VALID])
def test_valid_definitions_parse_into_their_structure(text: str, expected: StreamDefinition) -> None:
    parsed = parse("s", text)
    assert parsed == expected
    assert parsed.text == text
    assert [node.kind for node in parsed.apps] == [None] * len(parsed.apps)


@pytest.mark.parametrize(("text", "lines"), INVALID, ids=[text or "<empty>" for text, _ in INVALID])
def test_invalid_definitions_say_what_and_where(text: str, lines: tuple[str, str, str]) -> None:
    with pytest.raises(DslError) as caught:
        parse("s", text)
    assert str(caught.value) == "\n".join(lines)
    assert 0 <= caught.value.position <= len(text)


def test_the_table_covers_at_least_forty_definitions() -> None:
    assert len(VALID) + len(INVALID) >= 40
    assert len({text for text, _ in VALID + INVALID}) == len(VALID) + len(INVALID)


def test_dsl_error_is_a_config_error_with_position_line_and_column() -> None:
    with pytest.raises(ConfigError) as caught:
        parse("s", "http |\n  log --x")
    error = caught.value
    assert isinstance(error, DslError)
    assert (error.position, error.line, error.column) == (16, 2, 10)
    assert (error.problem, error.hint) == ("unexpected end of definition", "'=' and a value were expected after '--x'")
    assert error.definition == "http |\n  log --x"


def test_positions_point_at_each_app_and_destination() -> None:
    parsed = parse("s", ":in >  n: normalize --a=1 | log > :out")
    assert parsed.source_destination is not None and parsed.sink_destination is not None
    assert parsed.source_destination.position == 0
    assert [node.position for node in parsed.apps] == [7, 28]
    assert parsed.sink_destination.position == 34


def test_taps_are_destinations_with_exactly_one_dot() -> None:
    assert Destination("tracks.normalize").tap == ("tracks", "normalize")
    assert Destination("tracks").tap is None
    assert Destination("a.b.c").tap is None
    source = parse("s", ":tracks.n2 > log").source_destination
    assert source is not None and source.tap == ("tracks", "n2")


@pytest.mark.parametrize("name", ["", "a.b", "my stream", "ünïcode", "-bar", "0foo", "_x"])
def test_stream_names_are_checked(name: str) -> None:
    with pytest.raises(ConfigError, match=r"invalid stream name .*: names start with a letter, then letters, digits, "
                                          r"'-' and '_'") as caught:
        parse(name, "http | log")
    assert not isinstance(caught.value, DslError)


def test_equality_is_structural() -> None:
    assert parse("s", "a --x=1 | b") == parse("s", "  a   --x='1'|b")
    assert parse("s", "a | b") != parse("t", "a | b")
    assert parse("s", "a --x=1 | b") != parse("s", "a --x=2 | b")
    assert parse("s", "x: a | b") != parse("s", "a | b")


# -- canonical printing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("  http|log  ", "http | log"),
        ("normalize: normalize |n2: normalize", "normalize | n2: normalize"),
        ('a --x="a|b" --y=plain --z="" | b', "a --x='a|b' --y=plain --z='' | b"),
        ("a --x='say \"hi\"' --y='C:\\dir' | b", "a --x='say \"hi\"' --y=C:\\dir | b"),
        ("a --x='tab\there' --y='\"lead' --z=\"'lead\" | b", "a --x='tab\there' --y='\"lead' --z='''lead' | b"),
        ("a --x=\"it's\" --y='back\\\\slash here' | b", "a --x='it''s' --y='back\\\\slash here' | b"),
        ("a --e=\"#jsonPath(payload,'$.a b')\" | b", "a --e=#jsonPath(payload,'$.a b') | b"),
        (":in>normalize>:out", ":in > normalize > :out"),
        (":a>:b", ":a > :b"),
        (":tracks.normalize >log", ":tracks.normalize > log"),
        (":orders  --group=audit>log", ":orders --group=audit > log"),
    ],
)
def test_to_text_prints_the_canonical_spelling(text: str, canonical: str) -> None:
    assert to_text(parse("s", text)) == canonical
    assert to_text(parse("s", canonical)) == canonical


@pytest.mark.parametrize("text", [text for text, _ in VALID])
def test_hand_written_definitions_survive_print_and_parse(text: str) -> None:
    parsed = parse("s", text)
    printed = to_text(parsed)
    assert parse("s", printed) == parsed
    assert to_text(parse("s", printed)) == printed


# -- round trips of generated definitions -------------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,7}", fullmatch=True)
key_parts = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,5}", fullmatch=True)
keys = st.lists(key_parts, min_size=1, max_size=3).map(".".join)
values = st.one_of(st.text("ab =|,;'\"\\>:-\t\n", max_size=12), st.text(max_size=12))
parts = st.lists(key_parts, min_size=1, max_size=3)
taps = st.tuples(names, names).map(".".join)
plain_destinations = parts.filter(lambda p: len(p) != 2).map(".".join)
sink_destinations = parts.map(".".join)
groups = st.one_of(st.just({}), st.dictionaries(st.just("group"), values, max_size=1))


@st.composite
def app_nodes(draw: st.DrawFn) -> AppNode:
    name = draw(names)
    label = draw(st.one_of(st.just(name), names))
    return AppNode(label, name, draw(st.dictionaries(keys, values, max_size=3)))


@st.composite
def definitions(draw: st.DrawFn) -> StreamDefinition:
    apps = draw(st.lists(app_nodes(), max_size=4))
    source = draw(st.one_of(st.none(), plain_destinations, taps) if apps else st.one_of(plain_destinations, taps))
    sink = draw(st.one_of(st.none(), sink_destinations) if apps else sink_destinations)
    return StreamDefinition("s", "", Destination(source, options=draw(groups)) if source else None, apps,
                            Destination(sink) if sink else None)


@QUICK
@given(definitions())
def test_generated_definitions_round_trip(definition: StreamDefinition) -> None:
    text = to_text(definition)
    parsed = parse("s", text)
    assert parsed == definition
    assert to_text(parsed) == text


@QUICK
@given(values, st.sampled_from(["", " | b", "|b", " > :out", "> :out"]))
def test_single_quoted_values_with_doubled_quotes_read_as_scdf_reads_them(value: str, rest: str) -> None:
    written = "'" + value.replace("'", "''") + "'"
    parsed = parse("s", f"a --x={written}{rest}")
    assert parsed.apps[0].options == {"x": value}
    assert parse("s", to_text(parsed)) == parsed


@QUICK
@given(st.text("ab:|>-=;' \".\\\n", max_size=30))
def test_any_text_parses_and_round_trips_or_fails_with_a_dsl_error(text: str) -> None:
    try:
        parsed = parse("s", text)
    except DslError as error:
        assert 0 <= error.position <= len(text)
        assert str(error).endswith("^")
        return
    assert parse("s", to_text(parsed)) == parsed
