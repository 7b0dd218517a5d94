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
