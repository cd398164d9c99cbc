"""The ids of a user's recent events, kept to drop duplicates (a retried export, a redelivery).

An id is remembered as long as an event with it could still be accepted (within the allowed
lateness), so within that bound a duplicate is always recognised. Ids are kept as 64-bit
BLAKE2b hashes with the event time in whole seconds (rounded up, so an id is never forgotten
early). Two different ids of one user within the lateness window share a hash with a
probability of about n^2 / 2^65 (n = 1,000 ids: 3e-14).

Packed, not a dict: 16 bytes an id in two arrays, in memory as stored (about 21 in base64,
whatever the producer's id looks like: a UUID took 40). A ``dict[int, int]`` took about 100 in
memory, and a busy user's parsed record is kept between batches. A lookup is a search of the
packed hashes (``bytes.find``, in C).

>>> seen = SeenIds()
>>> seen.add("evt-1", 1_700_000_000.5)
>>> "evt-1" in seen, "evt-2" in seen
(True, False)
>>> again = SeenIds.from_state(seen.to_state())
>>> "evt-1" in again, len(again)
(True, 1)
>>> again.prune(horizon=1_700_000_002.0, at_least=0)
>>> len(again)
0
"""

from __future__ import annotations

import base64
import hashlib
import math
from array import array
from collections.abc import Iterator
from typing import Any

HASH = 8  #: bytes of a hash


def id_hash(event_id: str) -> int:
    """A stable 64-bit hash of an event id (the same in every process and version)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


class SeenIds:
    """Hashes of recent event ids and their event times (whole seconds, rounded up)."""

    __slots__ = ("_hashes", "_times", "kept")

    def __init__(self, hashes: bytes = b"", times: array | None = None) -> None:
        """``hashes``: packed little-endian 64-bit hashes; ``times``: one per hash."""
        self._hashes = bytearray(hashes)
        self._times: array = times if times is not None else array("q")
        #: Ids left by the last pruning: the next waits until there are twice as many, so
        #: pruning costs O(1) an event (ids stay at most that much longer than needed).
        self.kept = 0

    def _index(self, key: int) -> int:
        """The position of a hash, or -1 (a match must start on a hash's boundary)."""
        needle = key.to_bytes(HASH, "little")
        found = self._hashes.find(needle)
        while found != -1 and found % HASH:
            found = self._hashes.find(needle, found + 1)
        return -1 if found == -1 else found // HASH

    def __contains__(self, event_id: str) -> bool:
        return self._index(id_hash(event_id)) != -1

    def __len__(self) -> int:
        return len(self._times)

    def _keys(self) -> Iterator[int]:
        """The hashes, in the order of their times."""
        return (int.from_bytes(self._hashes[n:n + HASH], "little")
                for n in range(0, len(self._hashes), HASH))

    @property
    def times(self) -> dict[int, int]:
        """Hash -> event time (for checks and tests; a copy)."""
        return dict(zip(self._keys(), self._times, strict=True))

    def add(self, event_id: str, ts: float) -> None:
        self._put(id_hash(event_id), math.ceil(ts))

    def unseen(self, event_id: str) -> int | None:
        """The id's hash if the id is not here (for :meth:`add_unseen`), else None: a new
        event's id is hashed and searched for once, not again when it is added.

        >>> seen = SeenIds()
        >>> key = seen.unseen("evt-1")
        >>> seen.add_unseen(key, 1_700_000_000.5)
        >>> seen.unseen("evt-1") is None, "evt-1" in seen
        (True, True)
        """
        key = id_hash(event_id)
        return key if self._index(key) == -1 else None

    def add_unseen(self, key: int, ts: float) -> None:
        """Add the hash that :meth:`unseen` just gave (nothing was added since)."""
        self._append(key, math.ceil(ts))

    def _put(self, key: int, second: int) -> None:
        index = self._index(key)
        if index == -1:
            self._append(key, second)
        else:
            self._times[index] = second

    def _append(self, key: int, second: int) -> None:
        self._hashes += key.to_bytes(HASH, "little")
        self._times.append(second)

    def update(self, other: SeenIds) -> None:
        for key, second in zip(other._keys(), other._times, strict=True):
            self._put(key, second)

    def prune(self, horizon: float, at_least: int = 16) -> None:
        """Forget the ids of events older than ``horizon`` (no such event is accepted), once
        there are over ``at_least`` and twice as many as the last pruning left."""
        if len(self._times) <= max(at_least, 2 * self.kept):
            return
        keep = [n for n, second in enumerate(self._times) if second >= horizon]
        self._hashes = bytearray(b"".join(self._hashes[n * HASH:(n + 1) * HASH] for n in keep))
        self._times = array("q", (self._times[n] for n in keep))
        self.kept = len(self._times)

    def to_state(self) -> dict[str, Any]:
        """JSON-ready: the hashes and times as base64 of the packed arrays (no per-id Python
        work: this runs on every write of the user). 64-bit times: LZ4 packs their zero
        high bytes, and the stored record came out smaller than with 32-bit offsets."""
        return {"hashes": base64.b64encode(self._hashes).decode(),
                "times": base64.b64encode(self._times.tobytes()).decode()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SeenIds:
        """Rebuild from ``to_state``; a plain {event id: time} (an older record) is hashed."""
        if set(state) == {"hashes", "times"}:
            times = array("q")
            times.frombytes(base64.b64decode(state["times"]))
            return cls(base64.b64decode(state["hashes"]), times)
        seen = cls()
        for event_id, ts in state.items():
            seen.add(event_id, ts)
        return seen
