"""Secrets never reach a terminal or a log: passwords in URLs (credentials or `password=` query) become ***."""

from __future__ import annotations

import re

_CREDENTIALS = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^:/@\s?#'\"]*:)[^@\s'\"]*@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)[^&\s'\"]*", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***; the rest unchanged."""
    return _QUERY_PASSWORD.sub(r"\g<head>***", _CREDENTIALS.sub(r"\g<head>***@", text))
