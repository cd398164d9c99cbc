"""Where a user lives: the Kafka partition of a user's key, as every producer and worker
computes it.

Kafka's default partitioner puts a keyed record on ``murmur2(key) & 0x7fffffff`` modulo the
topic's partition count. Producers of shop events key by the user
(:func:`features.events.user_key`), so a user's events, change events and changelog records all
land on the partition this module computes, and the worker owning that input partition owns the
user.

>>> user_partition("u1", 4) == partition_of(b"u1", 4)
True
>>> 0 <= user_partition("visitor-9", 4) < 4
True
"""

from __future__ import annotations

import functools

from aiokafka.partitioner import murmur2


@functools.lru_cache(maxsize=8192)
def key_hash(key: bytes) -> int:
    """Kafka's default partitioner's hash; the partition is this modulo the topic's count.

    Cached: murmur2 is pure Python (2 us), and a user's key is hashed several times a batch
    (ownership, each change event, the changelog record)."""
    return murmur2(key) & 0x7FFFFFFF


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed ``key``."""
    return key_hash(key) % partitions


def user_partition(user_key: str, partitions: int) -> int:
    """The input partition (and so the worker) of the user keyed ``user_key``."""
    return partition_of(user_key.encode(), partitions)
