"""Secrets never reach a terminal or a log: passwords in URLs (credentials or `password=` query) become ***."""

from __future__ import annotations

import re
from urllib.parse import quote

_CREDENTIALS = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^:/@\s?#'\"]*:)[^@\s'\"]*@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)[^&\s'\"]*", re.IGNORECASE)
_MASKED_CREDENTIALS = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^:/@\s?#'\"]*:)\*\*\*@")
_MASKED_QUERY = re.compile(r"(?P<head>[?&]password=)\*\*\*(?=&|$)", re.IGNORECASE)
_SECRET_OPTION = re.compile(r"password|passwd|secret|token|credential|api-?key|private-?key", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***; the rest unchanged."""
    return _QUERY_PASSWORD.sub(r"\g<head>***", _CREDENTIALS.sub(r"\g<head>***@", text))


def has_masked_password(url: str) -> bool:
    """Whether a URL kept by `mask_secrets` had a password (now ***) that must be given again to use it."""
    return bool(_MASKED_CREDENTIALS.search(url) or _MASKED_QUERY.search(url))


def restore_password(url: str, password: str) -> str:
    """A URL kept by `mask_secrets` made usable again: its *** password replaced by `password` (URL-quoted)."""
    quoted = quote(password, safe="")
    url = _MASKED_CREDENTIALS.sub(lambda found: f"{found['head']}{quoted}@", url, count=1)
    return _MASKED_QUERY.sub(lambda found: f"{found['head']}{quoted}", url, count=1)


def is_secret_option(key: str, value: str) -> bool:
    """An app option that holds a secret: by its name (a password, token, key…; a `-file` option holds only a
    path), or a URL with a password in it."""
    named = bool(_SECRET_OPTION.search(key)) and not key.endswith("-file")
    return named or mask_secrets(value) != value
