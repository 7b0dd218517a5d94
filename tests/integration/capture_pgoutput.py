"""Captures real pgoutput v1 messages from the stack's PostgreSQL into `tests/unit/pgoutput_vectors.py`.

Run by hand when the decoder's test vectors need to change: `python -m tests.integration.capture_pgoutput`
(with `eval "$(deploy/local/stack env)"`). It works in a scratch database and drops its slot there.
"""

from __future__ import annotations

import os
import select
import time
from pathlib import Path

import psycopg2
import psycopg2.extras

from tests.integration.services import scratch_database

WORD, TIMES = "가나다라마바사", 150
BIG = WORD * TIMES  # 3,150 bytes: stored out of line (STORAGE EXTERNAL), so untouched updates send 'u'
SCRIPT = [
    """CREATE TABLE kinds (id bigint PRIMARY KEY, s smallint, i integer, n numeric(20,6), nn numeric, b boolean,
       t text, v varchar(50), ch char(4), d date, ts timestamp, tz timestamptz, by bytea, ia int[], ta text[],
       j jsonb, big text)""",
    "ALTER TABLE kinds ALTER big SET STORAGE EXTERNAL",
    "CREATE TABLE full_id (a int, b int, note text, PRIMARY KEY (a, b))",
    "ALTER TABLE full_id ALTER note SET STORAGE EXTERNAL",
    "ALTER TABLE full_id REPLICA IDENTITY FULL",
    "CREATE TYPE mood AS ENUM ('sad', 'ok')",
    "CREATE TABLE moods (id int PRIMARY KEY, m mood)",
    "CREATE PUBLICATION cap FOR TABLE kinds, full_id, moods",
    "SELECT pg_create_logical_replication_slot('cap', 'pgoutput')",
    """INSERT INTO kinds VALUES (1, -32768, 2147483647, 12345678901234.123456, 'NaN', true,
       'Ünïcödé 日本語 한국어 العربية 🎵', 'it''s "q"', 'ab', '2024-02-29', '2024-02-20 09:00:00.123456',
       '2024-02-20 09:00:00+09', '\\x00ff10'::bytea, '{1,NULL,3}', '{"a b","c\\"d",NULL,"NULL",""}',
       '{"k": [1, 2.5, "x"], "n": null}', %(big)s)""",
    "INSERT INTO kinds (id) VALUES (2)",
    "UPDATE kinds SET s = 7 WHERE id = 1",
    "UPDATE kinds SET id = 3 WHERE id = 2",
    "DELETE FROM kinds WHERE id = 3",
    "INSERT INTO full_id VALUES (1, 2, 'x')",
    "UPDATE full_id SET note = %(big)s WHERE a = 1",
    "UPDATE full_id SET b = 5 WHERE a = 1",
    "DELETE FROM full_id",
    "INSERT INTO moods VALUES (1, 'ok')",
    "TRUNCATE kinds, full_id",
]


def capture(url: str) -> list[bytes]:
    db = psycopg2.connect(url, options="-c TimeZone=Asia/Seoul")
    db.autocommit = True
    try:
        with db.cursor() as cursor:
            for statement in SCRIPT:
                cursor.execute(statement, {"big": BIG})
        stream = psycopg2.connect(url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
        try:
            cursor = stream.cursor()
            cursor.start_replication(slot_name="cap", decode=False,
                                     options={"proto_version": "1", "publication_names": "cap"})
            messages: list[bytes] = []
            quiet_until = time.monotonic() + 5
            while time.monotonic() < quiet_until:
                message = cursor.read_message()
                if message is None:
                    select.select([cursor], [], [], 0.2)
                    continue
                messages.append(bytes(message.payload))
                quiet_until = time.monotonic() + 1.5
            return messages
        finally:
            stream.close()
    finally:
        with db.cursor() as cursor:
            cursor.execute("SELECT pg_drop_replication_slot('cap')")
        db.close()


def main() -> None:
    with scratch_database(os.environ["TUNEFLOW_PG_URL"], prefix="tf_capture") as url:
        messages = capture(url)
    lines = [f'    "{m.hex()}",' for m in messages]
    target = Path(__file__).parents[1] / "unit" / "pgoutput_vectors.py"
    docstring = ('"""Real pgoutput v1 messages from PostgreSQL 15, written by tests/integration/capture_pgoutput.py:\n'
                 'the statements of its SCRIPT, decoded in commit order."""\n\n')
    target.write_text(docstring + f"BIG = {WORD!r} * {TIMES}\n\nMESSAGES = [\n" + "\n".join(lines) + "\n]\n")
    print(f"{len(messages)} messages written to {target}")


if __name__ == "__main__":
    main()
