"""Templates, `migrate` and `verify` on the real PostgreSQL, MariaDB and FerretDB (scratch databases, dropped after).

Sizes stay small here (a few thousand tracks); `make bench` runs the large ones.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from sqlalchemy import Engine, text

from streams.catalog.dburl import mask_password
from streams.catalog.generator import generate_catalog
from streams.migration.runs import MigrationRuns
from streams.migration.verify_runs import latest_clean_verify
from streams.serde import business_fields, canonical_json
from streams.state import open_state
from tests.integration.services import unique_name
from tests.migration_oracle import CATALOG_TEMPLATE, assembled_tracks, tamper_catalog

pytestmark = pytest.mark.integration

TRACKS = 3000
ENGINES = ["postgres_engine", "mariadb_engine"]


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def tuneflow(home: Path, *args: str, timeout: float = 600,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TUNEFLOW_HOME": str(home), **(env or {})})


@pytest.fixture
def client(mongo_uri: str) -> Iterator[MongoClient[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    yield client
    client.close()


@pytest.fixture
def databases(client: MongoClient[dict[str, Any]]) -> Iterator[list[str]]:
    """Target databases a test names; each is dropped afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        client.drop_database(name)


def new_database(databases: list[str]) -> str:
    databases.append(unique_name("tf_mig"))
    return databases[-1]


def contents(client: MongoClient[dict[str, Any]], database: str, collection: str) -> dict[Any, bytes]:
    return {doc["_id"]: canonical_json(business_fields(doc))
            for doc in client[database][collection].find({"_deleted": {"$ne": True}})}


@pytest.mark.parametrize("engine_fixture", ENGINES)
def test_catalog_migrates_as_assemble_builds_it_verifies_clean_and_names_tampered_keys(
        engine_fixture: str, request: pytest.FixtureRequest, tmp_path: Path, mongo_uri: str,
        client: MongoClient[dict[str, Any]], databases: list[str]) -> None:
    engine: Engine = request.getfixturevalue(engine_fixture)
    source = url_of(engine)
    generate_catalog(source, TRACKS, seed=21)
    database = new_database(databases)
    common = ("--source", source, "--target", mongo_uri, "--database", database,
              "--template", str(CATALOG_TEMPLATE))

    started = tuneflow(tmp_path, "migrate", "start", *common, "--parallel", "2", "--chunk-rows", "700")
    assert started.returncode == 0, started.stderr
    assert contents(client, database, "tracks") == assembled_tracks(engine)
    versions = {doc["_version"] for doc in client[database]["tracks"].find({}, {"_version": 1})}
    status = json.loads(tuneflow(tmp_path, "migrate", "status", "--json").stdout)
    assert status["status"] == "finished" and status["snapshot"]["position"] in versions  # the snapshot's position
    assert client[database]["albums"].count_documents({}) > 0 and client[database]["artists"].count_documents({}) > 0

    clean = tuneflow(tmp_path, "verify", *common, "--json", "--chunk-rows", "500")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert all(c["ok"] and c["source_documents"] == c["target_documents"] > 0
               for c in json.loads(clean.stdout)["collections"])
    with open_state(f"sqlite:///{tmp_path / 'tuneflow.db'}") as state:
        gate = latest_clean_verify(state, source, mongo_uri, ["tracks", "albums", "artists"], database=database,
                                   at_position=status["snapshot"]["position"])
    assert gate is not None and gate.id == json.loads(clean.stdout)["id"]  # read at or after the backfill's snapshot

    expected = tamper_catalog(client, database, engine)
    result = tuneflow(tmp_path, "verify", *common, "--collections", "tracks", "--json", "--chunk-rows", "500")
    assert result.returncode == 1, result.stderr
    [report] = json.loads(result.stdout)["collections"]
    assert report["keys"] == {kind: expected[kind] for kind in ("missing", "extra", "different")}
    fields = {sample["key"]: [f["path"] for f in sample["fields"]] for sample in report["samples"]}
    [nested], [updated], [reordered] = expected["nested"], expected["updated"], expected["reordered"]
    assert fields[nested] == ["album.label"] and fields[updated] == ["title"]
    assert fields[reordered][0].startswith("artists[0].")


def test_a_missing_column_exits_2_before_anything_is_written(
        postgres_engine: Engine, tmp_path: Path, mongo_uri: str, client: MongoClient[dict[str, Any]],
        databases: list[str]) -> None:
    source = url_of(postgres_engine)
    generate_catalog(source, 200)
    broken = tmp_path / "broken.yaml"
    broken.write_text(CATALOG_TEMPLATE.read_text().replace("country: country", "country: country_code"))
    database = new_database(databases)
    result = tuneflow(tmp_path, "migrate", "start", "--source", source, "--target", mongo_uri, "--database",
                      database, "--template", str(broken))
    assert result.returncode == 2
    assert "unknown column 'country_code' in table 'artist'. Did you mean 'country'?" in result.stderr
    assert database not in client.list_database_names()
    assert "no migrations yet" in tuneflow(tmp_path, "migrate", "list").stdout


# --- a schema the project does not ship -----------------------------------------------------------------

ORDERS_TEMPLATE = """
format: 1
collections:
  orders:
    table: orders
    key: order_id
    version: [placed_at]
    fields:
      status: {column: status, map: {N: NEW, S: SHIPPED, C: CANCELLED}, enum: [NEW, SHIPPED, CANCELLED]}
      placed: {column: placed_at, convert: timestamp}
      note: {coalesce: [note, {const: "-"}]}
      customer:
        object:
          table: customer
          join: {customer_id: customer_id}
          fields:
            id: customer_id
            name: name
            email: email
            vip: {column: vip, convert: bool}
            display: {concat: [name, {const: " #"}, customer_id]}
      lines:
        array:
          table: order_line
          join: {order_id: order_id}
          joins: {product: {table: product, join: {sku: sku}}}
          order: [line_no]
          fields:
            line: line_no
            sku: sku
            title: product.title
            price: {column: product.price, convert: float}
            qty: qty
      tags:
        array:
          table: order_tag
          join: {order_id: order_id}
          joins: {tag: {table: tag, join: {tag_id: tag_id}}}
          order: [{column: tag.label, descending: true}]
          value: tag.label
      line_count: {count: {table: order_line, join: {order_id: order_id}}}
  customers:
    table: customer
    key: customer_id
    fields: {name: name, email: email, vip: {column: vip, convert: bool}}
"""

ORDERS_DDL = """
CREATE TABLE customer (customer_id BIGINT PRIMARY KEY, name VARCHAR(100) NOT NULL, email VARCHAR(200),
                       vip SMALLINT NOT NULL);
CREATE TABLE product (sku VARCHAR(20) PRIMARY KEY, title VARCHAR(200) NOT NULL, price DECIMAL(10, 2));
CREATE TABLE orders (order_id BIGINT PRIMARY KEY, customer_id BIGINT REFERENCES customer (customer_id),
                     status CHAR(1) NOT NULL, placed_at {ts} NOT NULL, note VARCHAR(100));
CREATE TABLE order_line (order_id BIGINT NOT NULL REFERENCES orders (order_id), line_no INT NOT NULL,
                         sku VARCHAR(20) NOT NULL REFERENCES product (sku), qty INT NOT NULL,
                         PRIMARY KEY (order_id, line_no));
CREATE TABLE tag (tag_id INT PRIMARY KEY, label VARCHAR(30) NOT NULL);
CREATE TABLE order_tag (order_id BIGINT NOT NULL REFERENCES orders (order_id),
                        tag_id INT NOT NULL REFERENCES tag (tag_id), PRIMARY KEY (order_id, tag_id));
"""


def load_orders(engine: Engine, orders: int = 1500) -> dict[int, dict[str, Any]]:
    """Writes a shop schema with NULLs, empty arrays and a composite key; returns the documents it must give."""
    rng = random.Random(4)
    timestamp = "DATETIME(6)" if engine.dialect.name in ("mysql", "mariadb") else "TIMESTAMP"
    customers = [(n, f"Customer {n}", None if n % 4 == 0 else f"c{n}@example.com", n % 3 == 0) for n in range(1, 301)]
    products = [(f"SKU-{n:04d}", f"Product {n}", None if n % 7 == 0 else round(rng.uniform(1, 500), 2))
                for n in range(1, 101)]
    tags = [(n, label) for n, label in enumerate(["gift", "express", "fragile", "bulk", "return"], 1)]
    rows: dict[str, list[dict[str, Any]]] = {"orders": [], "order_line": [], "order_tag": []}
    expected: dict[int, dict[str, Any]] = {}
    base = datetime(2024, 1, 1)
    statuses = {"N": "NEW", "S": "SHIPPED", "C": "CANCELLED"}
    for order_id in range(10, 10 + orders * 3, 3):
        customer = None if order_id % 11 == 0 else rng.choice(customers)
        status = rng.choice("NSC")
        placed = base + timedelta(seconds=rng.randrange(10**7), microseconds=rng.randrange(10**6))
        note = None if rng.random() < 0.5 else f"note {order_id}"
        rows["orders"].append({"order_id": order_id, "customer_id": customer and customer[0], "status": status,
                               "placed_at": placed, "note": note})
        lines = []
        for line_no in rng.sample(range(1, 20), rng.randrange(0, 5)):
            sku, title, price = rng.choice(products)
            qty = rng.randrange(1, 9)
            rows["order_line"].append({"order_id": order_id, "line_no": line_no, "sku": sku, "qty": qty})
            lines.append({"line": line_no, "sku": sku, "title": title, "price": price, "qty": qty})
        chosen = rng.sample(tags, rng.randrange(0, 4))
        rows["order_tag"].extend({"order_id": order_id, "tag_id": tag_id} for tag_id, _ in chosen)
        expected[order_id] = {
            "_id": order_id, "status": statuses[status], "placed": placed.isoformat() + "Z",
            "note": note if note is not None else "-",
            "customer": None if customer is None else {
                "id": customer[0], "name": customer[1], "email": customer[2], "vip": customer[3],
                "display": f"{customer[1]} #{customer[0]}"},
            "lines": sorted(lines, key=lambda line: line["line"]),
            "tags": sorted((label for _, label in chosen), reverse=True),
            "line_count": len(lines),
        }
    with engine.begin() as conn:
        for statement in ORDERS_DDL.replace("{ts}", timestamp).split(";"):
            if statement.strip():
                conn.execute(text(statement))
        conn.execute(text("INSERT INTO customer VALUES (:a, :b, :c, :d)"),
                     [dict(zip("abcd", (n, name, email, int(vip)), strict=True))
                      for n, name, email, vip in customers])
        conn.execute(text("INSERT INTO product VALUES (:a, :b, :c)"),
                     [dict(zip("abc", product, strict=True)) for product in products])
        conn.execute(text("INSERT INTO tag VALUES (:a, :b)"), [dict(zip("ab", tag, strict=True)) for tag in tags])
        conn.execute(text("INSERT INTO orders VALUES (:order_id, :customer_id, :status, :placed_at, :note)"),
                     rows["orders"])
        conn.execute(text("INSERT INTO order_line VALUES (:order_id, :line_no, :sku, :qty)"), rows["order_line"])
        conn.execute(text("INSERT INTO order_tag VALUES (:order_id, :tag_id)"), rows["order_tag"])
    return expected


@pytest.mark.parametrize("engine_fixture", ENGINES)
def test_a_schema_of_our_own_migrates_through_its_template_and_verifies_clean(
        engine_fixture: str, request: pytest.FixtureRequest, tmp_path: Path, mongo_uri: str,
        client: MongoClient[dict[str, Any]], databases: list[str]) -> None:
    engine: Engine = request.getfixturevalue(engine_fixture)
    expected = load_orders(engine)
    template = tmp_path / "orders.yaml"
    template.write_text(ORDERS_TEMPLATE)
    database = new_database(databases)
    common = ("--source", url_of(engine), "--target", mongo_uri, "--database", database, "--template", str(template))
    assert tuneflow(tmp_path, "template", "check", str(template), "--source", url_of(engine)).returncode == 0

    started = tuneflow(tmp_path, "migrate", "start", *common, "--chunk-rows", "200", "--parallel", "2")
    assert started.returncode == 0, started.stderr
    stored = contents(client, database, "orders")
    assert stored == {key: canonical_json(document) for key, document in expected.items()}
    assert any(doc["customer"] is None for doc in expected.values())
    assert any(line["price"] is None for doc in expected.values() for line in doc["lines"])
    assert client[database]["customers"].count_documents({}) == 300

    clean = tuneflow(tmp_path, "verify", *common, "--chunk-rows", "300")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "OK — the target matches the source" in clean.stdout


# --- kill -9 and resume ---------------------------------------------------------------------------------


def test_kill_9_then_resume_reads_no_finished_chunk_again_and_ends_like_an_uninterrupted_run(
        postgres_engine: Engine, tmp_path: Path, mongo_uri: str, client: MongoClient[dict[str, Any]],
        databases: list[str]) -> None:
    source = url_of(postgres_engine)
    generate_catalog(source, 4000, seed=8)
    interrupted, uninterrupted = new_database(databases), new_database(databases)
    home = tmp_path / "home"
    args = ("--source", source, "--target", mongo_uri, "--template", str(CATALOG_TEMPLATE), "--chunk-rows", "100",
            "--parallel", "2")
    process = subprocess.Popen([sys.executable, "-m", "streams.cli", "migrate", "start", *args, "--database",
                                interrupted, "--throttle", "1500"], env={**os.environ, "TUNEFLOW_HOME": str(home)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_url = f"sqlite:///{home / 'tuneflow.db'}"
    deadline = time.monotonic() + 120
    run_id, done_at_kill = "", {}
    try:
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
            if not (home / "tuneflow.db").exists():
                continue
            with open_state(state_url) as state:
                runs = MigrationRuns(state)
                if not runs.ids():
                    continue
                run_id = runs.ids()[0]
                chunks = runs.chunk_reads(run_id)
            if chunks and sum(done for done, _ in chunks.values()) >= 0.3 * len(chunks):
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.kill()
        process.wait(10)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"

    with open_state(state_url) as state:
        runs = MigrationRuns(state)
        before = runs.chunk_reads(run_id)
        progress = runs.progress(run_id)
    done_at_kill = {chunk for chunk, (done, _) in before.items() if done}
    assert 0.3 * len(before) <= len(done_at_kill) < len(before)
    assert progress.status == "stopped" and not progress.alive
    stopped = tuneflow(home, "migrate", "status", run_id)
    assert f"tuneflow migrate resume {run_id}" in stopped.stdout

    password = str(postgres_engine.url.password)
    with open_state(state_url) as state:
        stored = MigrationRuns(state).get(run_id)
    assert f":{password}@" not in stored.source_url and stored.source_url == mask_password(source)
    refused = tuneflow(home, "migrate", "resume", run_id)
    assert refused.returncode == 2 and "TUNEFLOW_SOURCE_PASSWORD" in refused.stderr

    resumed = tuneflow(home, "migrate", "resume", run_id, env={"TUNEFLOW_SOURCE_PASSWORD": password})
    assert resumed.returncode == 0, resumed.stderr
    with open_state(state_url) as state:
        after = MigrationRuns(state).chunk_reads(run_id)
        final = MigrationRuns(state).progress(run_id)
    assert all(after[chunk] == (True, 1) for chunk in done_at_kill)  # never read again
    assert all(done for done, _ in after.values())
    rows_left = final.rows_done - sum(progress.per_collection[c]["rows_done"] for c in progress.per_collection)
    assert f"read {rows_left:,} documents in {len(before) - len(done_at_kill):,} chunks" in resumed.stdout

    straight = tuneflow(tmp_path / "other-home", "migrate", "start", *args, "--database", uninterrupted)
    assert straight.returncode == 0, straight.stderr
    for collection in ("tracks", "albums", "artists"):
        assert contents(client, interrupted, collection) == contents(client, uninterrupted, collection)
    assert len(contents(client, interrupted, "tracks")) == 4000


LABELS_TEMPLATE = """
format: 1
collections:
  labels:
    table: label
    key: code
    fields:
      name: name
      releases:
        array: {table: label_release, join: {code: code}, order: [title], value: title}
"""


@pytest.mark.parametrize("engine_fixture", ENGINES)
def test_text_keys_of_mixed_case_merge_and_verify_in_one_order_whatever_the_collation(
        engine_fixture: str, request: pytest.FixtureRequest, tmp_path: Path, mongo_uri: str,
        client: MongoClient[dict[str, Any]], databases: list[str]) -> None:
    engine: Engine = request.getfixturevalue(engine_fixture)
    rng = random.Random(2)
    codes = sorted({"".join(rng.choice("aBcDéZxY") for _ in range(rng.randrange(1, 4))) for _ in range(400)})
    releases = [(code, f"release {n}") for code in codes for n in range(rng.randrange(0, 3))]
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE label (code VARCHAR(10) PRIMARY KEY, name VARCHAR(50) NOT NULL)"))
        conn.execute(text("CREATE TABLE label_release (code VARCHAR(10) NOT NULL, title VARCHAR(50) NOT NULL, "
                          "PRIMARY KEY (code, title))"))
        conn.execute(text("INSERT INTO label VALUES (:c, :n)"), [{"c": c, "n": f"Label {c}"} for c in codes])
        conn.execute(text("INSERT INTO label_release VALUES (:c, :t)"), [{"c": c, "t": t} for c, t in releases])
    template = tmp_path / "labels.yaml"
    template.write_text(LABELS_TEMPLATE)
    database = new_database(databases)
    common = ("--source", url_of(engine), "--target", mongo_uri, "--database", database, "--template", str(template))
    started = tuneflow(tmp_path, "migrate", "start", *common, "--chunk-rows", "37")
    assert started.returncode == 0, started.stderr
    expected = {code: {"_id": code, "name": f"Label {code}",
                       "releases": sorted(t for c, t in releases if c == code)} for code in codes}
    assert contents(client, database, "labels") == {k: canonical_json(v) for k, v in expected.items()}
    clean = tuneflow(tmp_path, "verify", *common, "--chunk-rows", "41")
    assert clean.returncode == 0, clean.stdout + clean.stderr
