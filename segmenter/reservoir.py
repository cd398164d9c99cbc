"""The behaviour trainer's sample of users: a bottom-k sample by id hash, each user's latest
vector, aged to the trainer's latest event time when read.

Bottom-k (the users with the smallest :func:`segmenter.behavior.sample_hash`) keeps a uniform
sample of the *current* population whichever worker owns a user: every worker sends the
vectors of users whose hash is below :attr:`Reservoir.sample_below`, always the latest.

A sampled vector is as of the evaluation that sent it; a quiet user is sent again only at
their next review (``review_days``), and meanwhile the days since their last order and visit
grew. Judging whom a centre step moves on such stale vectors misjudged quiet users; the
sample is read aged to the latest event time any worker sent (:func:`segmenter.behavior.aged`).

>>> from segmenter.behavior import DAYS_DIMENSIONS
>>> reservoir = Reservoir(size=2)
>>> for n in range(5):
...     reservoir.keep(f"u{n}", [0.0] * DIMENSIONS, at=n * DAY)
>>> len(reservoir), reservoir.sample_below < 1.0
(2, True)
>>> days = reservoir.points()[:, DAYS_DIMENSIONS[0]]
>>> sorted(round(float(np.expm1(d))) for d in days) == sorted(4 - int(u[1:]) for u in reservoir)
True
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

import numpy as np

from features.windows import DAY
from segmenter.behavior import DIMENSIONS, aged, sample_hash


class Reservoir:
    """User id -> latest vector for the ``size`` users with the smallest id hashes."""

    def __init__(self, size: int, sample_below: float = 1.0) -> None:
        self.size = size
        #: Workers send the vectors of users whose id hash is below this.
        self.sample_below = sample_below
        self._vectors: dict[str, list[float]] = {}
        #: User -> the event time their vector is as of.
        self._at: dict[str, float] = {}
        #: The latest event time of any vector (what :meth:`points` ages to).
        self.event_time = 0.0
        #: (-hash, user) of the users kept: a max-heap, to drop the largest hash in O(log k)
        #: (entries of users gone since are skipped when they surface).
        self._by_hash: list[tuple[float, str]] = []
        #: What :meth:`points` last returned, until the next keep or drop (a trainer round
        #: reads the sample several times: a step, a fit, the refit's ids and sizes).
        self._points: Any = None

    def __len__(self) -> int:
        return len(self._vectors)

    def __iter__(self) -> Iterator[str]:
        return iter(self._vectors)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._vectors

    def keep(self, user_id: str, vector: list[float], at: float | None = None) -> None:
        """The user's latest vector, as of event time ``at`` (None: as of the latest)."""
        self._points = None
        if at is not None:  # the stream's time, whether or not this user is kept
            self.event_time = max(self.event_time, at)
        rank = sample_hash(user_id)
        if rank >= self.sample_below:
            return
        if user_id not in self._vectors:
            heapq.heappush(self._by_hash, (-rank, user_id))
        self._vectors[user_id] = vector
        if at is not None:
            self._at[user_id] = at
        else:
            self._at.pop(user_id, None)
        while len(self._vectors) > self.size:
            negative, dropped = heapq.heappop(self._by_hash)
            if self._vectors.pop(dropped, None) is not None:
                self._at.pop(dropped, None)
                self.sample_below = -negative

    def drop(self, user_id: str) -> None:
        """The user is gone (a visitor merged into a customer)."""
        self._points = None
        self._vectors.pop(user_id, None)
        self._at.pop(user_id, None)

    def points(self) -> Any:
        """Every kept vector as of the latest event time, one row each (in iteration order;
        read only: the same array until the sample changes)."""
        if self._points is None:
            latest = self.event_time
            days = [(latest - self._at.get(user, latest)) / DAY for user in self._vectors]
            self._points = (aged(list(self._vectors.values()), days) if self._vectors
                            else np.zeros((0, DIMENSIONS)))
        return self._points
