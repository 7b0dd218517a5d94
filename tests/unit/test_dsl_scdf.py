"""SCDF-style definitions, most from SCDF's own parser tests and documentation: what SCDF accepts reads into the same
apps, labels, options and destinations; what it rejects, and what tuneflow deliberately refuses, fails with a
position and a reason."""

from __future__ import annotations

import pytest

from streams.dsl import DslError, StreamDefinition, parse, to_text

App = tuple[str, str, dict[str, str]]  # label, app, options


def shape(definition: StreamDefinition) -> tuple[str | None, dict[str, str], list[App], str | None]:
    source, sink = definition.source_destination, definition.sink_destination
    return (source.name if source else None, source.options if source else {},
            [(node.label, node.app, node.options) for node in definition.apps], sink.name if sink else None)


ACCEPTED: list[tuple[str, tuple[str | None, dict[str, str], list[App], str | None]]] = [
    # an unquoted value ends at '>' as at a space
    ("http --port=9000> :out", (None, {}, [("http", "http", {"port": "9000"})], "out")),
    (":producer > transform --expression='payload.toUpperCase()' | filter --expression='payload.length() > 4'> "
     ":consumer",
     ("producer", {}, [("transform", "transform", {"expression": "payload.toUpperCase()"}),
                       ("filter", "filter", {"expression": "payload.length() > 4"})], "consumer")),
    # a ' inside a single-quoted value is written ''
    ("gemfire-cq --query='Select * from /Stocks where symbol=''VMW''' --regionName=foo --foo=bar",
     (None, {}, [("gemfire-cq", "gemfire-cq",
                  {"query": "Select * from /Stocks where symbol='VMW'", "regionName": "foo", "foo": "bar"})], None)),
    ("http | transform --expression='''hi''+payload' | log",
     (None, {}, [("http", "http", {}), ("transform", "transform", {"expression": "'hi'+payload"}),
                 ("log", "log", {})], None)),
    ("http | transform --expression='payload+''hi''' | log",
     (None, {}, [("http", "http", {}), ("transform", "transform", {"expression": "payload+'hi'"}),
                 ("log", "log", {})], None)),
    ("http | transform --expression='''hi''' | log",
     (None, {}, [("http", "http", {}), ("transform", "transform", {"expression": "'hi'"}), ("log", "log", {})], None)),
    ("http | transform --expression='payload.replace(\"abc\", '''')' | log",
     (None, {}, [("http", "http", {}), ("transform", "transform", {"expression": "payload.replace(\"abc\", '')"}),
                 ("log", "log", {})], None)),
    # inside double quotes a ' is plain, and so is '' (SCDF doubles only the quote that encloses)
    ("http | transform --expression=\"'hi'+'world'\" | log",
     (None, {}, [("http", "http", {}), ("transform", "transform", {"expression": "'hi'+'world'"}),
                 ("log", "log", {})], None)),
    ("http | transform --expression=\"''''hi''''\" | log",
     (None, {}, [("http", "http", {}), ("transform", "transform", {"expression": "''''hi''''"}),
                 ("log", "log", {})], None)),
    ("http --port=9014 | filter --expression=\"payload == 'foo'\" | log",
     (None, {}, [("http", "http", {"port": "9014"}), ("filter", "filter", {"expression": "payload == 'foo'"}),
                 ("log", "log", {})], None)),
    # an unquoted value keeps the quotes it holds, and what they enclose (SpEL)
    ("aaa | filter --expression=#jsonPath(payload,'$.lang')=='en'",
     (None, {}, [("aaa", "aaa", {}), ("filter", "filter", {"expression": "#jsonPath(payload,'$.lang')=='en'"})],
      None)),
    ("http | filter --expression=payload.matches('hello world') | log",
     (None, {}, [("http", "http", {}), ("filter", "filter", {"expression": "payload.matches('hello world')"}),
                 ("log", "log", {})], None)),
    ("http | transform --expression=payload+'hi'--param2='foobar' | log",
     (None, {}, [("http", "http", {}), ("transform", "transform", {"expression": "payload+'hi'--param2='foobar'"}),
                 ("log", "log", {})], None)),
    ("foo | transform --expression=--payload | bar",
     (None, {}, [("foo", "foo", {}), ("transform", "transform", {"expression": "--payload"}), ("bar", "bar", {})],
      None)),
    ("aaa --bbb=ccc,", (None, {}, [("aaa", "aaa", {"bbb": "ccc,"})], None)),
    ("foo --x=O'Brien", (None, {}, [("foo", "foo", {"x": "O'Brien"})], None)),
    # quotes hold '|', ';', '>' and line breaks
    ("http | transform --outputType='text/plain|charset=UTF-8'  | log",
     (None, {}, [("http", "http", {}), ("transform", "transform", {"outputType": "text/plain|charset=UTF-8"}),
                 ("log", "log", {})], None)),
    ("http | transform --outputType='text/plain;charset=UTF-8'  | log",
     (None, {}, [("http", "http", {}), ("transform", "transform", {"outputType": "text/plain;charset=UTF-8"}),
                 ("log", "log", {})], None)),
    (":producer > foobar --expression='aaa=bbb \n ccc=ddd' > :consumer",
     ("producer", {}, [("foobar", "foobar", {"expression": "aaa=bbb \n ccc=ddd"})], "consumer")),
    ("time | transform --expression='T(org.joda.time.format.DateTimeFormat).forPattern(\"yyyy-MM-dd HH:mm:ss\")"
     ".parseDateTime(payload)'",
     (None, {}, [("time", "time", {}), ("transform", "transform", {
         "expression": "T(org.joda.time.format.DateTimeFormat).forPattern(\"yyyy-MM-dd HH:mm:ss\")"
                       ".parseDateTime(payload)"})], None)),
    # a backslash is a plain character
    ("foo --x='a\\' | bar", (None, {}, [("foo", "foo", {"x": "a\\"}), ("bar", "bar", {})], None)),
    ("file --dir='C:\\out\\' | bar", (None, {}, [("file", "file", {"dir": "C:\\out\\"}), ("bar", "bar", {})], None)),
    # destinations: options on a source destination, dotted sink destinations, taps, bridges
    (":orders --group=audit > file", ("orders", {"group": "audit"}, [("file", "file", {})], None)),
    (":test --group=test > file", ("test", {"group": "test"}, [("file", "file", {})], None)),
    ("http > :foo.bar", (None, {}, [("http", "http", {})], "foo.bar")),
    ("http > :a.b.c", (None, {}, [("http", "http", {})], "a.b.c")),
    (":mystream.group1 > file", ("mystream.group1", {}, [("file", "file", {})], None)),
    (":foobar > file", ("foobar", {}, [("file", "file", {})], None)),
    (":bar > :boo", ("bar", {}, [], "boo")),
    # names and labels
    ("gemfire-cq", (None, {}, [("gemfire-cq", "gemfire-cq", {})], None)),
    ("wibble: http > :bar", (None, {}, [("wibble", "http", {})], "bar")),
    ("file | out: file", (None, {}, [("file", "file", {}), ("out", "file", {})], None)),
    ("http | foo: bar | file", (None, {}, [("http", "http", {}), ("foo", "bar", {}), ("file", "file", {})], None)),
    ("foo --name=value --x=y", (None, {}, [("foo", "foo", {"name": "value", "x": "y"})], None)),
    ("foo --x=1a2b --y=two ", (None, {}, [("foo", "foo", {"x": "1a2b", "y": "two"})], None)),
    ("foo --spring.cloud.stream.bindings.input.group=x --_a.0b=1",
     (None, {}, [("foo", "foo", {"spring.cloud.stream.bindings.input.group": "x", "_a.0b": "1"})], None)),
]

# (definition, position, what the message says); SCDF rejects each of these
REJECTED: list[tuple[str, int, str]] = [
    # names start with a letter
    (":foo > --2323", 7, "unexpected '-' at position 7: an app name or a named destination (':dest') was expected; "
                        "names start with a letter"),
    ("-bar | log", 0, "unexpected '-' at position 0: an app name or a named destination (':dest') was expected; "
                      "names start with a letter"),
    ("http | 9lives | log", 7, "an app name was expected; names start with a letter"),
    ("-l: http | log", 0, "names start with a letter"),
    (":foo > (", 7, "unexpected '(' at position 7: an app name or a named destination"),
    ("|", 0, "unexpected '|' at position 0"),
    (".", 0, "unexpected '.' at position 0"),
    (";", 0, "unexpected ';' at position 0"),
    # option names: no empty part, no spaces
    ("foo --name.=value", 11, "unexpected '=' at position 11: an option name part was expected after '--name.': "
                              "each '.' sits between two parts"),
    ("foo --.x=v", 6, "unexpected '.' at position 6: an option name was expected after '--'"),
    ("foo --a..b=v", 8, "an option name part was expected after '--a.'"),
    ("foo --a.-b=v", 8, "an option name part was expected after '--a.'"),
    ("foo -- name=value", 6, "an option name was expected after '--'"),
    ("foo --name =value", 10, "'=' and a value were expected after '--name'"),
    ("foo --name= value", 11, "a value was expected after '--name='"),
    ("foo --", 6, "unexpected end of definition at position 6: an option name was expected"),
    ("foo --bar", 9, "unexpected end of definition at position 9: '=' and a value were expected"),
    ("foo --bar=", 10, "unexpected end of definition at position 10: a value was expected"),
    # a value cannot start with what ends one
    ("aaa --bbb=> --ccc=ddd", 10, "unexpected '>' at position 10: a value was expected after '--bbb='"),
    ("aaa --bbb=| --ccc=ddd", 10, "unexpected '|' at position 10: a value was expected after '--bbb='"),
    ("aaa --bbb=; --ccc=ddd", 10, "unexpected ';' at position 10: a value was expected after '--bbb='"),
    ("aaa --bbb=\t --ccc=ddd", 10, "a value was expected after '--bbb='"),
    ("aaa --bbb=ccc;ddd | log", 13, "unexpected ';' at position 13: ';' ends a value, as in SCDF: quote a value "
                                    "that holds one, e.g. --bbb='a;b'"),
    ("foo | transform --expression=new StringBuilder(payload).reverse() | bar", 33,
     "unexpected 'S' at position 33: an option (--key=value), '|' or '>' was expected"),
    ("foo | bar --expression='select foo", 23, "unterminated quoted value at position 23: the value has no closing"),
    ("foo | bar --expression=\"select foo", 23, "unterminated quoted value at position 23"),
    # a backslash does not escape: refused with how to write it, never read differently
    ("foo --x='a\\'b' | bar", 12, "unexpected 'b' at position 12: a backslash inside quotes is a plain character, "
                                  "as in SCDF, so that quote closed the value: write a ' inside a single-quoted value "
                                  "as '', e.g. --x='it''s'"),
    ("foo --x=\"say \\\"hi\\\"\" | bar", 15, "a backslash inside quotes is a plain character"),
    # deliberate differences: text after a closing quote; a quote left open in an unquoted value
    ("http | transform --expression='hi'+payload | log", 34,
     "unexpected '+' at position 34: text after a closing quote is refused (SCDF would keep the quotes in the value:"
     " 'hi'+payload); quote the whole value: --expression='''hi''+payload'"),
    ("foo |  transform --expression=''Hello, world!'' | bar", 32, "text after a closing quote is refused"),
    ("foo --x=\"a\"\"b\" | bar", 11, "a double-quoted value cannot hold '\"': put the value in single quotes"),
    ("foo --x=O'Brien | bar", 9, "unclosed ' in the value of --x at position 9: SCDF would read the rest of the "
                                 "definition into the value; quote the whole value: --x='O''Brien'"),
    # labels: one, with a space after its ':'
    ("http | foo: goggle: bar | file", 18, "unexpected ':' at position 18: an app has one label at most"),
    ("http | foo :bar | file", 11, "unexpected ':' at position 11"),
    ("in:kafka --topic=raw | log", 3, "no space after the label 'in:' at position 3: write 'in: kafka'"),
    # destinations
    ("foo > bar", 6, "unexpected 'b' at position 6: a named destination (':dest') was expected after '>'"),
    (":foo >", 6, "unexpected end of definition at position 6"),
    ("::foo > *", 1, "unexpected ':' at position 1: a destination name was expected after ':'"),
    (":foo > :", 8, "unexpected end of definition at position 8: a destination name was expected after ':'"),
    (":foo | bar", 5, "unexpected '|' at position 5: '>' was expected after ':foo'"),
    ("http > :test value", 13, "unexpected 'v' at position 13: nothing may follow the output destination ':test'"),
    ("trigger > :myjob   too", 19, "nothing may follow the output destination ':myjob'"),
    (":boo .xx > file", 5, "unexpected '.' at position 5: '>' was expected after ':boo'"),
    (":-x > log", 0, "invalid destination name ':-x' at position 0: each part starts with a letter, digit or '_'"),
    ("foo bar", 4, "unexpected 'b' at position 4"),
    # deliberate differences: destination wildcards, options after a sink destination, '||'
    (":foo.* > file", 5, "unexpected '*' in a destination name at position 5: SCDF's destination wildcards ('*', "
                         "'/', '#') are not supported: a tuneflow destination is one Kafka topic"),
    (":*foo > file", 1, "SCDF's destination wildcards"),
    (":a/ > file", 2, "SCDF's destination wildcards"),
    ("http > :foo/*#", 11, "SCDF's destination wildcards"),
    ("http > :out --x=1", 12, "option on an output destination at position 12: SCDF ignores options after "
                              "'> :dest'; tuneflow refuses them"),
    ("foo --aaa=bbb || bar", 14, "unexpected '||' at position 14: SCDF's '||' (a list of unbound apps) is not "
                                 "supported"),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED, ids=[text for text, _ in ACCEPTED])
def test_what_scdf_accepts_reads_into_the_same_apps_and_destinations(
        text: str, expected: tuple[str | None, dict[str, str], list[App], str | None]) -> None:
    parsed = parse("s", text)
    assert shape(parsed) == expected
    assert parse("s", to_text(parsed)) == parsed


@pytest.mark.parametrize(("text", "position", "message"), REJECTED, ids=[text for text, _, _ in REJECTED])
def test_what_scdf_rejects_fails_with_a_position(text: str, position: int, message: str) -> None:
    with pytest.raises(DslError) as caught:
        parse("s", text)
    assert caught.value.position == position
    assert message in str(caught.value)
    assert str(caught.value).endswith("^")


def test_the_scdf_table_covers_every_point_of_the_issue() -> None:
    texts = {text for text, _ in ACCEPTED} | {text for text, _, _ in REJECTED}
    assert len(texts) == len(ACCEPTED) + len(REJECTED) >= 80
    for required in [":foo > --2323", "foo --name.=value", "foo --.x=v", "foo --a..b=v", "http --port=9000> :out",
                     "aaa --bbb=> --ccc=ddd", "http | transform --expression='''hi''+payload' | log",
                     "foo --x='a\\'b' | bar", ":orders --group=audit > file", "http > :foo.bar", ":foo.* > file",
                     "http | transform --expression='hi'+payload | log"]:
        assert required in texts, required
