"""Passwords in URLs: masked for output and storage, and given back to a stored URL to use it again."""

from __future__ import annotations

import pytest

from streams.masking import has_masked_password, mask_secrets, restore_password


@pytest.mark.parametrize(("url", "password"), [
    ("postgresql://tuneflow:s3cret@127.0.0.1:5432/catalog", "s3cret"),
    ("mysql://app:p%40ss%2Fword@db:3306/legacy", "p@ss/word"),
    ("mongodb://admin:pw@127.0.0.1:27017/?authSource=admin", "pw"),
    ("postgresql://app@db/catalog?password=pw&sslmode=require", "pw"),
])
def test_a_masked_url_keeps_no_password_and_takes_it_back(url: str, password: str) -> None:
    masked = mask_secrets(url)
    assert password not in masked and has_masked_password(masked)
    restored = restore_password(masked, password)
    assert mask_secrets(restored) == masked
    assert restored == url


@pytest.mark.parametrize("url", ["sqlite:///tmp/legacy.db", "mongodb://127.0.0.1:27017", "embedded:///tmp/store"])
def test_a_url_without_a_password_needs_none(url: str) -> None:
    assert not has_masked_password(mask_secrets(url))
    assert restore_password(url, "unused") == url
