"""The platform's persistent state: registered apps, stream definitions and their releases."""

from __future__ import annotations

from streams.state.db import default_url, open_state
from streams.state.models import ReleaseStatus, StreamStatus
from streams.state.store import AppRecord, ReleaseRecord, StateStore, StreamRecord

__all__ = [
    "AppRecord",
    "ReleaseRecord",
    "ReleaseStatus",
    "StateStore",
    "StreamRecord",
    "StreamStatus",
    "default_url",
    "open_state",
]
