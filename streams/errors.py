"""The one exception tree: callers catch at the level they care about."""

from __future__ import annotations


class TuneflowError(Exception):
    """Root of every error tuneflow raises on purpose."""


class ConfigError(TuneflowError):
    """A setting, option or URL given by the user is wrong; the message says how to fix it."""


class ServiceUnavailableError(TuneflowError):
    """A service tuneflow needs (database, broker, store) cannot be reached or refused us."""


class RecordError(TuneflowError):
    """One record is invalid; it goes to the dead-letter topic with its reasons."""

    def __init__(self, message: str, reasons: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons or [{"field": "", "message": message}]


class TransientError(TuneflowError):
    """A failure expected to pass (store restarting, broker leader election); retried with backoff."""
