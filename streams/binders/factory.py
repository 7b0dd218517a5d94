"""Picks a binder by name (`kafka` or `memory`), the one place that knows both."""

from __future__ import annotations

from typing import Any

from streams import settings
from streams.binders.base import Binder
from streams.errors import ConfigError

BINDERS = ("kafka", "memory")


def create_binder(name: str, **kwargs: Any) -> Binder:
    """`kafka` takes `bootstrap` (default: TUNEFLOW_KAFKA_BOOTSTRAP) and KafkaBinder options."""
    if name == "kafka":
        from streams.binders.kafka import KafkaBinder  # confluent-kafka loads only when Kafka is used

        bootstrap = kwargs.pop("bootstrap", None) or settings.kafka_bootstrap()
        return KafkaBinder(bootstrap, **kwargs)
    if name == "memory":
        from streams.binders.memory import MemoryBinder

        if kwargs:
            raise ConfigError(f"the memory binder takes no options (got {', '.join(sorted(kwargs))})")
        return MemoryBinder()
    raise ConfigError(f"unknown binder {name!r}; valid binders: {', '.join(BINDERS)}")
