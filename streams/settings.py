"""Where tuneflow finds its home and services: the `TUNEFLOW_*` environment, with local defaults."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("TUNEFLOW_HOME", "~/.tuneflow")).expanduser()


def kafka_bootstrap() -> str:
    return os.environ.get("TUNEFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def mongo_uri() -> str:
    return os.environ.get("TUNEFLOW_MONGO_URI", "mongodb://127.0.0.1:27017")


def state_db_url() -> str:
    return os.environ.get("TUNEFLOW_DB_URL") or f"sqlite:///{home() / 'tuneflow.db'}"


def ready_timeout_s() -> float:
    """How long a deploy or update waits for a new instance to become ready."""
    value = os.environ.get("TUNEFLOW_READY_TIMEOUT_S", "90")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        from streams.errors import ConfigError

        raise ConfigError(f"TUNEFLOW_READY_TIMEOUT_S must be a positive number of seconds, got {value!r}")
    return seconds
