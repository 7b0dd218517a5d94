"""DAG checks of stream definitions: apps and their kinds, options, labels, taps, fan-in/fan-out and cycles."""

from __future__ import annotations

import json

import pytest

from streams.dag import AppTopics, DagReport, DestinationReport, check, topics
from streams.dsl import StreamDefinition, parse
from streams.errors import ConfigError
from streams.runtime import loader


def defined(**texts: str) -> dict[str, StreamDefinition]:
    return {name: parse(name, text) for name, text in texts.items()}


def rejected(text: str, name: str = "s", existing: dict[str, StreamDefinition] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        check(parse(name, text), existing or {})
    return str(caught.value)


def test_a_valid_stream_reports_kinds_and_topics() -> None:
    report = check(parse("tracks", "kafka --topic=raw | normalize | mongo --collection=tracks"))
    assert [(a.label, a.app, a.kind, a.inputs, a.outputs) for a in report.apps] == [
        ("kafka", "kafka", "source", [], ["tracks.kafka"]),
        ("normalize", "normalize", "processor", ["tracks.kafka"], ["tracks.normalize"]),
        ("mongo", "mongo", "sink", ["tracks.normalize"], []),
    ]
    assert [node.kind for node in report.definition.apps] == ["source", "processor", "sink"]
    assert report.destinations == {}


def test_check_leaves_the_given_definition_untouched() -> None:
    definition = parse("tracks", "kafka --topic=raw | log")
    check(definition)
    assert [node.kind for node in definition.apps] == [None, None]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kafka --topic=raw | normalise | log",
         "unknown processor app 'normalise'. Did you mean 'normalize'? Known: assemble, normalize"),
        ("kafak --topic=raw | log",
         "unknown source app 'kafak'. Did you mean 'kafka'? Known: cdc-mysql, cdc-postgres, http, jdbc, kafka"),
        ("kafka --topic=raw | mongoo",
         "unknown sink app 'mongoo'. Did you mean 'mongo'? Known: dual-write, file, jdbc, log, mongo"),
        ("kafka --topic=raw | zzz", "unknown sink app 'zzz'. Known: dual-write, file, jdbc, log, mongo"),
    ],
)
def test_unknown_apps_name_the_closest_app_of_the_kind_needed_there(text: str, message: str) -> None:
    assert rejected(text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mongo | log", "'mongo' is a sink; a stream starts with a source or a named destination (':dest >')"),
        ("normalize | log",
         "'normalize' is a processor; a stream starts with a source or a named destination (':dest >')"),
        ("kafka --topic=a | k2: kafka --topic=b | log",
         "'kafka' is a source; only the first app of a stream can be a source"),
        ("kafka --topic=a | log | mongo", "'log' is a sink; only the last app of a stream can be a sink"),
        ("kafka --topic=a | normalize",
         "'normalize' is a processor; a stream ends with a sink or a named destination ('> :dest')"),
        ("kafka --topic=a", "'kafka' is a source; a stream ends with a sink or a named destination ('> :dest')"),
        ("log", "'log' is a sink; a stream starts with a source or a named destination (':dest >')"),
        (":raw > kafka --topic=a | log", "'kafka' is a source; it cannot read from ':raw': a source starts a stream"),
        ("kafka --topic=a | log > :out", "'log' is a sink; it cannot write to ':out': a sink ends a stream"),
    ],
)
def test_apps_must_fit_their_place_in_the_stream(text: str, message: str) -> None:
    assert rejected(text) == message


@pytest.mark.parametrize(
    "text",
    ["kafka --topic=a > :raw", ":raw > log", ":raw > normalize > :clean", ":raw > normalize | log", ":a > :b"],
)
def test_named_destinations_stand_in_for_a_source_or_a_sink(text: str) -> None:
    report = check(parse("s", text))
    assert all(app.kind for app in report.apps)


def test_a_name_registered_as_two_kinds_is_resolved_by_its_place(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = {**loader.available_apps(), ("sink", "kafka"): "sinks.log:LogSink"}
    monkeypatch.setattr(loader, "available_apps", lambda: registry)
    first = check(parse("a", "kafka --topic=raw > :x"))
    last = check(parse("b", ":x > kafka --level=DEBUG"))
    assert [(app.app, app.kind) for app in first.apps + last.apps] == [("kafka", "source"), ("kafka", "sink")]
    assert rejected("kafka --topic=a | kafka --level=DEBUG | log", "c") == (
        "duplicate label 'kafka': give one of them a label, e.g. 'k2: kafka'")
    assert rejected("kafka --topic=a | k2: kafka --level=DEBUG | log", "c") == (
        "'kafka' is a sink and a source; only the first app of a stream can be a source")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kafka | log", "invalid options for app 'kafka': --topic: required"),
        ("kafka --topic=raw | log --max-chars=3 --levle=INFO",
         "invalid options for app 'log': --max-chars: Input should be greater than or equal to 10;"
         " --levle: unknown option"),
        ("kafka --topic=raw | out: log --level=LOUD",
         "invalid options for app 'log': --level: Input should be 'DEBUG', 'INFO' or 'WARNING' (label 'out')"),
        ("kafka --topic=raw | normalize --strict=true | log",
         "invalid options for app 'normalize': --strict: unknown option"),
    ],
)
def test_invalid_options_name_the_field_and_the_reason(text: str, message: str) -> None:
    assert rejected(text) == message


def test_valid_options_in_kebab_case_pass() -> None:
    report = check(parse("s", "kafka --topic=raw --group=g | log --max-chars=80 --level=DEBUG"))
    assert [app.kind for app in report.apps] == ["source", "sink"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kafka --topic=a | normalize | normalize | log",
         "duplicate label 'normalize': give one of them a label, e.g. 'n2: normalize'"),
        ("kafka --topic=a | n2: normalize | n2: normalize | log",
         "duplicate label 'n2': give one of them a label, e.g. 'n3: normalize'"),
        ("kafka --topic=a | out: log | out: mongo",
         "duplicate label 'out': give one of them a label, e.g. 'm2: mongo'"),
    ],
)
def test_duplicate_labels_are_rejected_with_an_example_label(text: str, message: str) -> None:
    assert rejected(text) == message


def test_duplicate_labels_are_told_before_app_problems() -> None:
    assert rejected("mongo | mongo") == "duplicate label 'mongo': give one of them a label, e.g. 'm2: mongo'"


# -- taps ----------------------------------------------------------------------------------------------------------

TRACKS = defined(tracks="kafka --topic=raw | normalize | mongo", archive="kafka --topic=old | normalize > :cold")


def test_a_tap_reads_the_output_topic_of_an_app_of_another_stream() -> None:
    report = check(parse("audit", ":tracks.normalize > log"), TRACKS)
    assert [(a.label, a.kind, a.inputs, a.outputs) for a in report.apps] == [("log", "sink", ["tracks.normalize"], [])]
    assert report.destinations["tracks.normalize"] == DestinationReport(
        "tracks.normalize", tap=True, writers=["tracks"], readers=["audit"])


def test_a_tap_on_the_first_app_reads_its_output_too() -> None:
    report = check(parse("raw-copy", ":tracks.kafka > file --dir=/tmp/raw"), TRACKS)
    assert report.apps[0].inputs == ["tracks.kafka"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (":trakcs.normalize > log",
         "unknown stream 'trakcs' in tap ':trakcs.normalize'. Did you mean 'tracks'? A destination with exactly one '.'"
         " is a tap: ':stream.label' reads an app of an existing stream"),
        (":raw.tracks > log",
         "unknown stream 'raw' in tap ':raw.tracks'. A destination with exactly one '.' is a tap: ':stream.label' reads"
         " an app of an existing stream"),
        (":tracks.normalise > log",
         "unknown label 'normalise' in tap ':tracks.normalise'. Did you mean 'normalize'? Labels of stream 'tracks':"
         " kafka, normalize, mongo"),
        (":tracks.n2 > log",
         "unknown label 'n2' in tap ':tracks.n2'. Labels of stream 'tracks': kafka, normalize, mongo"),
        (":tracks.mongo > log",
         "cannot tap ':tracks.mongo': app 'mongo' is the last app of stream 'tracks' and has no output"),
        (":archive.normalize > log",
         "cannot tap ':archive.normalize': app 'normalize' is the last app of stream 'archive' and writes to ':cold';"
         " read ':cold'"),
    ],
)
def test_taps_must_name_an_existing_stream_and_an_app_with_an_output(text: str, message: str) -> None:
    assert rejected(text, "audit", TRACKS) == message


# -- fan-in, fan-out and cycles ------------------------------------------------------------------------------------

DIAMOND = defined(
    ingest="kafka --topic=raw > :a",
    left=":a > normalize > :d",
    right=":a > n2: normalize > :d",
)


def test_fan_out_and_fan_in_are_reported_per_destination() -> None:
    report = check(parse("store", ":d > mongo"), DIAMOND)
    assert report.destinations == {
        "a": DestinationReport("a", writers=["ingest"], readers=["left", "right"]),
        "d": DestinationReport("d", writers=["left", "right"], readers=["store"]),
    }
    assert [(a.label, a.inputs, a.outputs) for a in report.apps] == [("mongo", ["d"], [])]


def test_a_fan_out_diamond_is_not_a_cycle() -> None:
    streams = dict(DIAMOND)
    streams["store"] = parse("store", ":d > mongo")
    for name, definition in streams.items():
        report = check(definition, streams)
        assert report.definition.name == name


def test_a_cycle_across_three_streams_is_named() -> None:
    existing = defined(s2=":b > normalize > :c", s3=":c > normalize > :a")
    assert rejected(":a > normalize > :b", "s1", existing) == (
        "cycle through named destinations: s1 -> :b -> s2 -> :c -> s3 -> :a -> s1")


def test_the_shortest_cycle_is_named_when_there_are_several() -> None:
    existing = defined(s2=":b > normalize > :c", s3=":c > normalize > :a", s4=":b > normalize > :a")
    assert rejected(":a > normalize > :b", "s1", existing) == (
        "cycle through named destinations: s1 -> :b -> s4 -> :a -> s1")


def test_a_stream_reading_what_it_writes_is_a_cycle() -> None:
    assert rejected(":a > normalize > :a") == "cycle through named destinations: s -> :a -> s"


def test_taps_close_cycles_too() -> None:
    existing = defined(s1=":loop > normalize | log")
    assert rejected(":s1.normalize > normalize > :loop", "s2", existing) == (
        "cycle through named destinations: s2 -> :loop -> s1 -> :s1.normalize -> s2")


def test_a_redefined_stream_replaces_its_old_definition() -> None:
    existing = defined(s1=":a > normalize > :b", s2=":b > normalize > :c")
    check(parse("s1", "kafka --topic=raw > :b"), existing)
    assert rejected(":c > normalize > :b", "s1", existing) == (
        "cycle through named destinations: s1 -> :b -> s2 -> :c -> s1")


# -- report and topics ---------------------------------------------------------------------------------------------


def test_the_report_serializes_to_json() -> None:
    report: DagReport = check(parse("store", ":d > mongo"), DIAMOND)
    document = report.to_json()
    assert json.loads(json.dumps(document)) == {
        "stream": "store",
        "definition": ":d > mongo",
        "apps": [{"label": "mongo", "app": "mongo", "kind": "sink", "inputs": ["d"], "outputs": []}],
        "destinations": [
            {"name": "a", "tap": False, "writers": ["ingest"], "readers": ["left", "right"]},
            {"name": "d", "tap": False, "writers": ["left", "right"], "readers": ["store"]},
        ],
    }


def test_topics_follow_the_stream_and_label_naming() -> None:
    definition = parse("tracks", ":raw > n: normalize | n2: normalize | mongo")
    assert topics(definition) == [
        AppTopics("n", ["raw"], "tracks.n"),
        AppTopics("n2", ["tracks.n"], "tracks.n2"),
        AppTopics("mongo", ["tracks.n2"], None),
    ]
    assert topics(parse("ingest", "kafka --topic=x > :raw")) == [AppTopics("kafka", [], "raw")]
    assert topics(parse("audit", ":tracks.n > log")) == [AppTopics("log", ["tracks.n"], None)]


def test_a_bridge_copies_one_destination_into_another() -> None:
    definition = parse("copy", ":a > :b")
    assert topics(definition) == [AppTopics("bridge", ["a"], "b")]
    report = check(definition)
    assert report.apps == []
    assert report.destinations == {
        "a": DestinationReport("a", readers=["copy"]),
        "b": DestinationReport("b", writers=["copy"]),
    }


# -- SCDF's destinations: a consumer group on a source destination, dotted output destinations -------------------


def test_a_source_destination_takes_a_consumer_group_and_nothing_else() -> None:
    report = check(parse("audit", ":orders --group=audit-g > log"))
    assert report.definition.source_destination is not None
    assert report.definition.source_destination.options == {"group": "audit-g"}
    assert rejected(":orders --grup=x > log") == (
        "unknown option '--grup' on ':orders': a source destination takes only --group (the consumer group)"
        " [default: the stream name]")


def test_a_dotted_output_destination_is_a_plain_destination_that_another_stream_reads() -> None:
    existing = defined(writer="kafka --topic=raw > :foo.bar")
    report = check(parse("reader", ":foo.bar > log"), existing)
    assert report.apps[0].inputs == ["foo.bar"]
    assert report.destinations["foo.bar"] == DestinationReport("foo.bar", tap=False, writers=["writer"],
                                                               readers=["reader"])


def test_a_dotted_output_destination_may_not_be_the_topic_between_two_apps_of_a_stream() -> None:
    assert rejected("kafka --topic=raw > :tracks.normalize", "w", TRACKS) == (
        "cannot write to ':tracks.normalize': it is the output topic of app 'normalize' of stream 'tracks';"
        " pick another destination name")
