"""Our murmur2 is Kafka's: the reference hashes from librdkafka's unit test, which match the Java client."""

from __future__ import annotations

import pytest

from streams.binders.partitioner import murmur2, partition_for

# librdkafka src/rdmurmur2.c, `java_murmur2_results`.
VECTORS = [
    (b"kafka", 0xD067CF64),
    (b"giberish123456789", 0x8F552B0C),
    (b"1234", 0x9FC97B14),
    (b"234", 0xE7C009CA),
    (b"34", 0x873930DA),
    (b"4", 0x5A4B5CA1),
    (b"PreAmbleWillBeRemoved,ThePrePartThatIs", 0x78424F1C),
    (b"reAmbleWillBeRemoved,ThePrePartThatIs", 0x4A62B377),
    (b"eAmbleWillBeRemoved,ThePrePartThatIs", 0xE0E4E09E),
    (b"AmbleWillBeRemoved,ThePrePartThatIs", 0x62B8B43F),
    (b"", 0x106E08D9),
]


@pytest.mark.parametrize(("key", "expected"), VECTORS)
def test_murmur2_matches_the_java_client(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_partition_is_the_positive_hash_modulo_the_count() -> None:
    # kafka-python's vectors, taken from Kafka's Java partitioner over 1000 partitions.
    keys = [b"", b"a", b"ab", b"abc", b"123456789", b"\x00 "]
    assert [partition_for(key, 1000) for key in keys] == [681, 524, 434, 107, 566, 742]


def test_non_ascii_keys_hash_as_bytes() -> None:
    assert 0 <= partition_for("밤편지".encode(), 12) < 12
    assert murmur2(b"\x81" * 1000) == murmur2(bytes([0x81] * 1000))
