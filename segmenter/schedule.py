"""When to look at a user again: time alone moves segments (recency grows while nothing happens).

A min-heap keyed by event time, so each timer tick touches only the users that are due, never
every user. Rescheduling a user simply supersedes the older entry (lazy deletion).

>>> schedule = ReviewSchedule()
>>> schedule.schedule("u1", 100.0); schedule.schedule("u2", 50.0); schedule.schedule("u1", 300.0)
>>> schedule.pop_due(200.0)
['u2']
>>> schedule.pop_due(400.0), len(schedule)
(['u1'], 0)
"""

from __future__ import annotations

import heapq


class ReviewSchedule:
    """Users keyed by the event time at which they are next due for review."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, user_id: str, at: float | None) -> None:
        """Review ``user_id`` once event time reaches ``at``; None cancels any review."""
        if at is None:
            self._due.pop(user_id, None)
            return
        if self._due.get(user_id) == at:
            return
        self._due[user_id] = at
        heapq.heappush(self._heap, (at, user_id))
        if len(self._heap) > 4 * len(self._due) + 1024:
            self._compact()

    def pop_due(self, now: float, limit: int | None = None) -> list[str]:
        """Remove and return the users due at event time ``now`` (earliest first)."""
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now and (limit is None or len(due) < limit):
            at, user_id = heapq.heappop(self._heap)
            if self._due.get(user_id) == at:
                del self._due[user_id]
                due.append(user_id)
        return due

    def _compact(self) -> None:
        self._heap = [(at, user_id) for user_id, at in self._due.items()]
        heapq.heapify(self._heap)
