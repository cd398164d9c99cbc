"""The ids of a user's recent events, kept to drop duplicates (a retried export, a redelivery).

An id is remembered as long as an event with it could still be accepted (within the allowed
lateness), so within that bound a duplicate is always recognised. Ids are kept as 64-bit
BLAKE2b hashes with the event time in whole seconds (rounded up, so an id is never forgotten
early): 16 bytes an id when stored (about 21 in base64), whatever the producer's id looks like
(a UUID took 40). Two different ids of
one user within the lateness window share a hash with a probability of about n^2 / 2^65
(n = 1,000 ids: 3e-14).

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
from typing import Any


def id_hash(event_id: str) -> int:
    """A stable 64-bit hash of an event id (the same in every process and version)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


class SeenIds:
    """Hashes of recent event ids -> their event time (whole seconds, rounded up)."""

    __slots__ = ("kept", "times")

    def __init__(self, times: dict[int, int] | None = None) -> None:
        self.times: dict[int, int] = times if times is not None else {}
        #: Ids left by the last pruning: the next waits until there are twice as many, so
        #: pruning costs O(1) an event (ids stay at most that much longer than needed).
        self.kept = 0

    def __contains__(self, event_id: str) -> bool:
        return id_hash(event_id) in self.times

    def __len__(self) -> int:
        return len(self.times)

    def add(self, event_id: str, ts: float) -> None:
        self.times[id_hash(event_id)] = math.ceil(ts)

    def update(self, other: SeenIds) -> None:
        self.times.update(other.times)

    def prune(self, horizon: float, at_least: int = 16) -> None:
        """Forget the ids of events older than ``horizon`` (no such event is accepted), once
        there are over ``at_least`` and twice as many as the last pruning left."""
        if len(self.times) <= max(at_least, 2 * self.kept):
            return
        self.times = {key: ts for key, ts in self.times.items() if ts >= horizon}
        self.kept = len(self.times)

    def to_state(self) -> dict[str, Any]:
        """JSON-ready: the hashes and times as base64 of packed 64-bit arrays (no per-id
        Python work: this runs on every write of the user)."""
        return {"hashes": base64.b64encode(array("Q", self.times.keys()).tobytes()).decode(),
                "times": base64.b64encode(array("q", self.times.values()).tobytes()).decode()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SeenIds:
        """Rebuild from ``to_state``; a plain {event id: time} (an older record) is hashed."""
        if set(state) != {"hashes", "times"}:
            return cls({id_hash(event_id): math.ceil(ts) for event_id, ts in state.items()})
        hashes, times = array("Q"), array("q")
        hashes.frombytes(base64.b64decode(state["hashes"]))
        times.frombytes(base64.b64decode(state["times"]))
        return cls(dict(zip(hashes, times, strict=True)))
