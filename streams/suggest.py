"""The one "did you mean" for mistyped names (apps, streams, labels, versions)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` Did you mean 'x'?` for the closest of `choices`, or an empty string when none is close."""
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""
