"""`tuneflow stream import` and `export` as a user runs them on an SCDF export: the exact report, what is created,
what is kept, and the errors for a file that cannot be read."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from streams.runtime import loader
from tests.unit.cli import Result, Run

EXPORT = Path(__file__).parents[1] / "scdf" / "streams.json"
FULLY_MAPPED = ["all-tracks-log", "eu-in", "orders-archive", "orders-copy", "orders-in", "orders-log", "us-in"]

DRY_RUN_REPORT = (EXPORT.parent / "streams.dry-run.txt").read_text()  # every line checked by hand


def http_registered() -> bool:
    return ("source", "http") in loader.available_apps()


def expected_dry_run() -> str:
    return DRY_RUN_REPORT


def names(run: Run, home: Path | None = None) -> list[str]:
    result = run("stream", "list", "--json", **({"home": home} if home else {}))
    return [stream["name"] for stream in orjson.loads(result.stdout)]


def test_a_dry_run_reports_every_stream_and_what_it_could_not_map_and_creates_nothing(tuneflow: Run) -> None:
    result = tuneflow("stream", "import", str(EXPORT), "--dry-run")
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout == expected_dry_run()
    assert names(tuneflow) == []


def test_without_partial_only_fully_mapped_streams_are_created(tuneflow: Run) -> None:
    result = tuneflow("stream", "import", str(EXPORT))
    assert result.returncode == 1
    expected = sorted([*FULLY_MAPPED, *(["httptest"] if http_registered() else [])])
    assert result.stdout.endswith(f"{len(expected)} of 15 streams created\n")
    assert names(tuneflow) == expected
    listed = {s["name"]: s["definition"] for s in orjson.loads(tuneflow("stream", "list", "--json").stdout)}
    assert listed["orders-log"] == ":orders --group=audit > log --level=WARNING"
    assert listed["orders-copy"] == "kafka --topic=scdf-orders > :scdf-orders-copy"
    again = tuneflow("stream", "import", str(EXPORT), "--dry-run")
    assert "orders-in: left out: a stream of that name exists here" in again.stdout


def test_partial_creates_partly_mapped_streams_with_the_deployment_properties_that_mean_the_same(
        tuneflow: Run) -> None:
    result = tuneflow("stream", "import", str(EXPORT), "--partial")
    assert result.returncode == 1
    assert "tracks: created: without what is listed" in result.stdout
    assert "tracks-tap: created\n" in result.stdout
    assert {"tracks", "tracks-tap"} <= set(names(tuneflow))
    info = orjson.loads(tuneflow("stream", "info", "tracks", "--json").stdout)
    assert info["canonical"] == ("kafka --topic=scdf-tracks | normalize | mongodb: mongo --collection=tracks "
                                 "--uri=mongodb://127.0.0.1:27017/scdf_catalog --database=scdf_catalog")
    assert info["deployment_properties"] == "deployer.normalize.count=2,deployer.mongodb.memory=1024m"
    assert info["description"] == "tracks into MongoDB"
    for stream in orjson.loads(tuneflow("stream", "list", "--json").stdout):
        checked = tuneflow("stream", "validate", stream["name"], "--definition", stream["definition"])
        assert checked.returncode == 0, checked.stderr


def test_the_json_report_names_each_gap(tuneflow: Run) -> None:
    result = tuneflow("stream", "import", str(EXPORT), "--dry-run", "--json")
    report = orjson.loads(result.stdout)
    streams = {stream["name"]: stream for stream in report["streams"]}
    assert len(streams) == 15 and report["dry_run"] is True
    cdc = streams["catalog-cdc"]
    assert (cdc["status"], cdc["reason"]) == ("left out", "partly mapped (--partial creates it without what is listed)")
    assert [(gap["what"], gap["label"], gap["name"]) for gap in cdc["not_mapped"]] == [
        ("option", "debezium", "debezium.properties.database.password"),
        ("option", "debezium", "debezium.properties.topic.prefix"),
    ]
    assert streams["orders-in"]["definition"] == "kafka --topic=scdf-orders --group=orders-in > :orders"
    assert streams["wild"]["error"].startswith("unexpected '*' in a destination name at position 8")


SMALL = [
    {"name": "mysql-cdc", "dslText": "cdc-debezium --connector=mysql --database.hostname=db --database.user=u "
                                     "--database.server.id=7 | log --level=ERROR"},
    {"name": "oracle-cdc", "dslText": "debezium --debezium.properties.connector.class="
                                      "io.debezium.connector.oracle.OracleConnector | log"},
    {"name": "multi", "dslText": "kafka --topics=a,b | log --log.name=x",
     "deploymentProperties": '{"app.log.log.level": "WARN", "app.*.foo": "1", "deployer.log.count": "0",'
                             ' "deployer.kafka.local.javaOpts": "-Xmx1g", "deployer.nope.count": "2"}'},
    {"name": "jdbc-in", "dslText": "jdbc --spring.datasource.url=jdbc:postgresql://legacy:5432/catalog "
                                   "--spring.datasource.username=me --spring.datasource.password=s3cret "
                                   "--jdbc.supplier.query='select * from track' | file --directory=/tmp/x "
                                   "--file.consumer.mode=REPLACE"},
    {"name": "_bad", "dslText": "kafka --topics=a | log"},
]


def test_options_values_and_properties_map_or_say_why_not(tuneflow: Run, tmp_path: Path) -> None:
    export = tmp_path / "small.json"
    export.write_bytes(orjson.dumps(SMALL))
    result = tuneflow("stream", "import", str(export), "--dry-run")
    assert result.stdout.splitlines() == [
        "mysql-cdc: left out: partly mapped (--partial creates it without what is listed)",
        "  scdf:     cdc-debezium --connector=mysql --database.hostname=db --database.user=u --database.server.id=7 "
        "| log --level=ERROR",
        "  tuneflow: cdc-debezium: cdc-mysql --url=mariadb://u@db/ --server-id=7 | log",
        "  not mapped: option --level of 'log': level ERROR: tuneflow's log sink writes at DEBUG, INFO or WARNING",
        "oracle-cdc: left out: not every app could be mapped",
        "  scdf:     debezium --debezium.properties.connector.class=io.debezium.connector.oracle.OracleConnector | log",
        "  not mapped: app 'debezium': Debezium connector io.debezium.connector.oracle.OracleConnector: tuneflow "
        "captures changes of PostgreSQL and MariaDB/MySQL",
        "multi: left out: partly mapped (--partial creates it without what is listed)",
        "  scdf:     kafka --topics=a,b | log --log.name=x",
        "  tuneflow: kafka | log",
        "  deployment properties: app.log.level=WARNING",
        "  not mapped: option --topics of 'kafka': several topics: tuneflow's kafka source reads one; make one "
        "stream per topic",
        "  not mapped: option --log.name of 'log': tuneflow logs under the app's own logger",
        "  not mapped: deployment property app.*.foo: app.* options: give the option per app",
        "  not mapped: deployment property deployer.log.count: not a whole number of instances ≥ 1",
        "  not mapped: deployment property deployer.kafka.local.javaOpts: a local deployer setting: tuneflow's "
        "deployers have no such setting",
        "  not mapped: deployment property deployer.nope.count: names no app of the stream ('nope')",
        "jdbc-in: left out: partly mapped (--partial creates it without what is listed)",
        "  scdf:     jdbc --spring.datasource.url=jdbc:postgresql://legacy:5432/catalog "
        "--spring.datasource.username=me --spring.datasource.password=s3cret "
        "--jdbc.supplier.query='select * from track' | file --directory=/tmp/x "
        "--file.consumer.mode=REPLACE",
        "  tuneflow: jdbc --url=postgresql://me:***@legacy:5432/catalog | file --dir=/tmp/x",
        "  not mapped: option --jdbc.supplier.query of 'jdbc': tuneflow's jdbc source reads the legacy catalog's "
        "tracks, not a query",
        "  not mapped: option --file.consumer.mode of 'file': mode REPLACE: tuneflow's file sink always appends",
        "_bad: left out: invalid stream name '_bad': names start with a letter, then letters, digits, '-' and '_'",
        "  scdf:     kafka --topics=a | log",
        "0 of 5 streams would be created (dry run: nothing was)",
    ]


def test_name_equals_definition_lines_import_too(tuneflow: Run, tmp_path: Path) -> None:
    lines = tmp_path / "streams.txt"
    lines.write_text("# from `stream list`\n\nraw = kafka --topic=raw > :clean\n"
                     "store = :clean > mongo --collection=t\n")
    result = tuneflow("stream", "import", str(lines))
    assert (result.returncode, result.stdout.splitlines()[-1]) == (0, "2 of 2 streams created")
    assert names(tuneflow) == ["raw", "store"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "Error: no such file: {path}\n"),
        ('{"_embedded": ', "Error: {path} is not valid JSON: unexpected end of data: line 1 column 15 (char 14)\n"),
        ('{"_embedded": {"streamDefinitionResourceList": {}}}',
         "Error: {path}: expected SCDF's stream list (GET /streams/definitions: _embedded.streamDefinitionResourceList)"
         " or a JSON list of streams\n"),
        ('[{"name": "x"}]', "Error: {path}: stream #1 ('x') has no 'dslText'\n"),
        ('[{"dslText": "a | b"}]', "Error: {path}: stream #1 has no 'name'\n"),
        ("ok = kafka --topic=a | log\nnot a stream\n",
         "Error: {path}:2: expected 'name = definition' (or SCDF's JSON export), got 'not a stream'\n"),
    ],
)
def test_a_missing_or_malformed_file_exits_2_with_what_is_wrong(
        tuneflow: Run, tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "export.json"
    if content is not None:
        path.write_text(content)
    result = tuneflow("stream", "import", str(path))
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message.format(path=path))
    assert names(tuneflow) == []


def test_one_page_of_several_is_imported_with_a_warning(tuneflow: Run, tmp_path: Path) -> None:
    page = {"_embedded": {"streamDefinitionResourceList": [{"name": "a", "dslText": "kafka --topic=a | log"}]},
            "page": {"size": 1, "totalElements": 3, "totalPages": 3, "number": 0}}
    path = tmp_path / "page.json"
    path.write_bytes(orjson.dumps(page))
    result = tuneflow("stream", "import", str(path))
    assert result.returncode == 0
    assert result.stderr == (f"warning: {path} holds 1 of 3 streams (one page of SCDF's list): export them all with "
                             "GET /streams/definitions?size=3\n")


def test_an_empty_scdf_list_imports_nothing(tuneflow: Run, tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text('{"_links": {"self": {"href": "http://localhost:9393/streams/definitions"}}, '
                    '"page": {"size": 20, "totalElements": 0, "totalPages": 0, "number": 0}}')
    assert tuneflow("stream", "import", str(path)) == Result(0, "0 of 0 streams created\n", "")


# -- export -------------------------------------------------------------------------------------------------------


def test_an_scdf_export_imports_back_into_the_same_streams(tuneflow: Run, tmp_path: Path) -> None:
    tuneflow("stream", "import", str(EXPORT), "--partial")
    streams = names(tuneflow)
    exported = tuneflow("stream", "export", *streams)
    assert exported.returncode == 0
    assert exported.stderr == "note: stream tracks: app 'normalize' (normalize): no SCDF counterpart, written as it " \
                              "is\n"
    document = orjson.loads(exported.stdout)
    entries = {e["name"]: e for e in document["_embedded"]["streamDefinitionResourceList"]}
    assert entries["orders-log"]["dslText"] == ":orders --group=audit > log --log.level=WARN"
    assert entries["tracks"]["dslText"] == (
        "kafka --kafka.supplier.topics=scdf-tracks | normalize | mongodb --mongodb.consumer.collection=tracks "
        "--spring.data.mongodb.uri=mongodb://127.0.0.1:27017/scdf_catalog --spring.data.mongodb.database=scdf_catalog")
    assert entries["tracks"]["deploymentProperties"] == {"deployer.normalize.count": "2",
                                                         "deployer.mongodb.memory": "1024m"}
    path = tmp_path / "back.json"
    path.write_text(exported.stdout)
    other = tmp_path / "other"
    again = tuneflow("stream", "import", str(path), home=other)
    assert again.returncode == 0, again.stdout
    before = orjson.loads(tuneflow("stream", "list", "--json").stdout)
    after = orjson.loads(tuneflow("stream", "list", "--json", home=other).stdout)
    assert after == before
    info = orjson.loads(tuneflow("stream", "info", "tracks", "--json", home=other).stdout)
    assert info["deployment_properties"] == "deployer.normalize.count=2,deployer.mongodb.memory=1024m"


def test_the_tuneflow_format_is_name_equals_definition_lines(tuneflow: Run, tmp_path: Path) -> None:
    tuneflow("stream", "import", str(EXPORT))
    exported = tuneflow("stream", "export", "orders-in", "orders-log", "--format", "tuneflow")
    assert exported.stdout == ("orders-in = kafka --topic=scdf-orders --group=orders-in > :orders\n"
                               "orders-log = :orders --group=audit > log --level=WARNING\n")
    path = tmp_path / "streams.txt"
    path.write_text(exported.stdout)
    assert tuneflow("stream", "import", str(path), home=tmp_path / "other").returncode == 0
    assert names(tuneflow, tmp_path / "other") == ["orders-in", "orders-log"]


def test_exporting_an_unknown_stream_exits_2(tuneflow: Run) -> None:
    result = tuneflow("stream", "export", "nope")
    assert (result.returncode, result.stderr) == (2, "Error: unknown stream 'nope'.\n")
