"""What the Kafka binder's clients share: the logger, error unwrapping and the bounded reachability check."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from streams.errors import ServiceUnavailableError

log = logging.getLogger("tuneflow.binder.kafka")


def error_of(exc: KafkaException) -> KafkaError:
    if exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return KafkaError(KafkaError._FAIL, str(exc))


def describe(exc: KafkaException | KafkaError) -> str:
    error = exc if isinstance(exc, KafkaError) else error_of(exc)
    return f"{error.name()}: {error.str()}"


def on_client_error(error: KafkaError) -> None:
    """librdkafka reports broker trouble here and keeps retrying by itself; we only make it visible."""
    if error.fatal():
        log.error("kafka client fatal error: %s", describe(error))
    elif error.code() == KafkaError._ALL_BROKERS_DOWN:
        log.warning("kafka: no broker reachable (%s); librdkafka keeps retrying", error.str())
    else:
        log.info("kafka client: %s", describe(error))


def base_config(bootstrap: str) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, "logger": log, "error_cb": on_client_error,
            # New partitions (scaling out) reach producers and consumers within 30 s instead of 5 min.
            "topic.metadata.refresh.interval.ms": 30_000}


def partition_counts(client: Any, bootstrap: str, timeout_s: float, led_only: bool = False) -> dict[str, int]:
    """Partitions per topic as the cluster sees them (`led_only`: count only partitions with a leader).

    Raises ServiceUnavailableError naming `bootstrap` if the cluster does not answer within `timeout_s`.
    """
    try:
        metadata = client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise unreachable(bootstrap, timeout_s, exc) from exc
    counts = {}
    for name, topic in metadata.topics.items():
        if topic.error is not None:
            continue
        partitions = topic.partitions.values()
        counts[name] = sum(1 for p in partitions if p.error is None and p.leader >= 0) if led_only \
            else len(partitions)
    return counts


def unreachable(bootstrap: str, timeout_s: float, exc: KafkaException) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"Kafka at {bootstrap} did not answer within {timeout_s:g}s ({describe(exc)}). "
        "Is the broker running? Set TUNEFLOW_KAFKA_BOOTSTRAP to its host:port "
        "(`make stack-up` starts a local one)."
    )
