"""Secrets never reach a terminal or a log: passwords in URLs (credentials or `password=` query) become ***."""

from __future__ import annotations

import re

_CREDENTIALS = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^:/@\s?#'\"]*:)[^@\s'\"]*@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)[^&\s'\"]*", re.IGNORECASE)
_SECRET_OPTION = re.compile(r"password|passwd|secret|token|credential|api-?key|private-?key", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***; the rest unchanged."""
    return _QUERY_PASSWORD.sub(r"\g<head>***", _CREDENTIALS.sub(r"\g<head>***@", text))


def is_secret_option(key: str, value: str) -> bool:
    """An app option that holds a secret: by its name (a password, token, key…; a `-file` option holds only a
    path), or a URL with a password in it."""
    named = bool(_SECRET_OPTION.search(key)) and not key.endswith("-file")
    return named or mask_secrets(value) != value
