"""FerretDB on SQLite next to FerretDB on PostgreSQL, same binary, same documents, same run.

Starts two scratch FerretDB servers on free ports (the stack's own instance is left alone) and measures the
store ceilings on each; deploy/local/stack runs the faster backend by default.
"""

from __future__ import annotations

from typing import Any

from benchmarks import ceilings
from benchmarks.records import track_documents
from tests.integration.ferretdb_server import ferretdb_binary, ferretdb_on_pg, ferretdb_on_sqlite

# SQLite-backed FerretDB upserts a few dozen documents a second: a small sample tells the two apart.
COMPARE_UPSERT_DOCS = 300


def run_all(env: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    ferretdb_binary()  # fails early with what to do
    documents = track_documents(ceilings.STORE_DOCS)
    results: dict[str, list[dict[str, Any]]] = {}
    print("ferretdb backend sqlite:", flush=True)
    with ferretdb_on_sqlite() as server:
        results["sqlite"] = ceilings.store_ceilings(server.uri, documents, upsert_docs=COMPARE_UPSERT_DOCS, repeats=1)
    print("ferretdb backend pg:", flush=True)
    with ferretdb_on_pg(env["TUNEFLOW_PG_URL"]) as server:
        results["pg"] = ceilings.store_ceilings(server.uri, documents, upsert_docs=COMPARE_UPSERT_DOCS, repeats=1)
    return results
