"""Durable progress of a CDC source's initial snapshot, kept in a Kafka topic of its own (`<stream>.<label>.snapshot`)
through the binder: the last state written wins. Written only after the rows it covers are durable."""

from __future__ import annotations

from typing import Any

from streams.binders.base import Binder
from streams.cdc.topic_state import TopicState

PROGRESS_KEY = b"snapshot"


def progress_topic(stream: str, label: str) -> str:
    return f"{stream}.{label}.snapshot"


class SnapshotProgressStore(TopicState):
    def __init__(self, binder: Binder, topic: str) -> None:
        super().__init__(binder, topic, PROGRESS_KEY, "the snapshot progress")

    def save(self, value: dict[str, Any], flush: bool = True) -> None:
        """Progress is durable before the snapshot goes on: every save waits for Kafka."""
        super().save(value, flush)
