"""The embedded (SQLite) store honours the document-store contract; the same checks run on MongoDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.stores.embedded import EmbeddedStore
from tests.store_contract import StoreContract


class TestEmbeddedStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[EmbeddedStore]:
        store = EmbeddedStore(tmp_path / "store")
        yield store
        store.close()
