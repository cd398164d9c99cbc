"""Parsed user records kept between batches, lent out once and taken back when stored.

Live traffic comes in sessions: a shopper's events arrive a few at a time over minutes, so the
same users are loaded batch after batch, and parsing a stored record (LZ4, JSON, the features'
state) was a fifth of the worker's work per evaluation. This keeps the record object the
publisher just serialised, beside the exact bytes it stored.

Checked out, checked in: :meth:`take` hands a record out at most once (it leaves the cache), and
only if the store still holds the very bytes object it was serialised to; :meth:`keep` takes it
back when the publisher stores it again. A record whose events fail to apply, whose review
raises, or that is only read, is never stored again and so never comes back: the next load
parses the stored bytes, exactly as without the cache. Whatever else writes the store (a
changelog recovery, a tombstone) writes other bytes objects, so the identity check misses.

>>> records = ParsedRecords(2)
>>> stored = b"v1"
>>> records.keep(b"u1", stored, "record")
>>> records.take(b"u1", stored), records.take(b"u1", stored)
('record', None)
>>> records.keep(b"u1", stored, "record")
>>> records.take(b"u1", b"v1-other") is None  # the store moved on
True
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

Record = TypeVar("Record")


class ParsedRecords(Generic[Record]):
    """At most ``size`` parsed records, the least recently stored dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[bytes, tuple[bytes, Record]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, key: bytes, stored: bytes) -> Record | None:
        """The record parsed from ``stored``, if kept; it leaves the cache either way."""
        entry = self._entries.pop(key, None)
        return entry[1] if entry is not None and entry[0] is stored else None

    def keep(self, key: bytes, stored: bytes, record: Record) -> None:
        """``record`` was just serialised to ``stored``, which the store now holds."""
        self._entries[key] = (stored, record)
        self._entries.move_to_end(key)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def rekey(self, key: bytes, stored: bytes, now_stored: bytes) -> None:
        """The store replaced ``stored`` by ``now_stored``, the same record (its delivered
        outbox left out): a record kept for ``stored`` is now kept for ``now_stored``."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] is stored:
            self._entries[key] = (now_stored, entry[1])

    def drop(self, key: bytes) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
