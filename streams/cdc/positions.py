"""A CDC source's durable log position, kept in a compacted Kafka topic of its own (`<stream>.<label>.offsets`)
through the binder, the way Kafka Connect keeps source offsets: the last position written wins.

Why Kafka and not the platform state: the position is only worth anything next to the changes it covers, which are
in Kafka, and every instance already reaches Kafka (a pod need not reach the platform database, and a stream
undeployed and deployed again keeps its topics). A position is written only after every change up to it was
acknowledged by Kafka, so the topic never runs ahead of the changes.
"""

from __future__ import annotations

from streams.binders.base import Binder
from streams.cdc.topic_state import TopicState

POSITION_KEY = b"position"


def positions_topic(stream: str, label: str) -> str:
    return f"{stream}.{label}.offsets"


class PositionStore(TopicState):
    def __init__(self, binder: Binder, topic: str) -> None:
        super().__init__(binder, topic, POSITION_KEY, "the log position", compacted=True)
