"""Marks the pipeline's own writes into a source database so that CDC drops them instead of echoing them back.

A writer (the `jdbc` sink's relational store) marks each transaction first thing: on PostgreSQL with a
transactional logical message under `ORIGIN_PREFIX` (pgoutput sends it when started with `messages 'true'`), on
MariaDB/MySQL with a row written into the `ORIGIN_TABLE` marker table. A CDC reader that sees the mark drops every
row change of that transaction; the transaction's end still moves the source's position on.
"""

from __future__ import annotations

ORIGIN_PREFIX = "tuneflow.origin"
ORIGIN_TABLE = "tuneflow_origin"


def is_origin_message(prefix: str, transactional: bool) -> bool:
    """Whether a pgoutput logical message marks its transaction as the pipeline's own write."""
    return transactional and prefix == ORIGIN_PREFIX


def is_origin_table(schema: str, table: str, followed_schema: str) -> bool:
    """Whether a binlog rows event is the marker row of a pipeline's own transaction."""
    return table == ORIGIN_TABLE and schema == followed_schema
