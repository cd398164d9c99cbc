"""When to look at a user again: time alone moves segments (recency grows while nothing happens).

A min-heap keyed by event time, so each timer tick touches only the users that are due, never
every user. A user has one entry in the heap, at or before their due time: a review moved
later (the usual case: each event pushes recency's thresholds on) only updates the due time,
and the entry is moved on when it comes up; only a review moved earlier adds an entry, and
supersedes the old one. (Pushing an entry on every change and compacting the heap now and
then kept up to four entries a user, and a compaction of a million users held the event loop
for a second.)

>>> schedule = ReviewSchedule()
>>> schedule.schedule("u1", 100.0); schedule.schedule("u2", 50.0); schedule.schedule("u1", 300.0)
>>> schedule.pop_due(200.0)
['u2']
>>> schedule.pop_due(400.0), len(schedule)
(['u1'], 0)
"""

from __future__ import annotations

import heapq

#: Heap entries looked at per user returned, at most: a call's work stays bounded by its
#: ``limit`` even when most entries that come up only move on (their users' reviews were
#: moved later), as when a backlog's event time jumps ahead.
ENTRIES_PER_USER = 8


class ReviewSchedule:
    """Users keyed by the event time at which they are next due for review."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        #: user -> when they are due.
        self._due: dict[str, float] = {}
        #: user -> the time of their live entry in the heap (at or before their due time).
        self._queued: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, user_id: str, at: float | None) -> None:
        """Review ``user_id`` once event time reaches ``at``; None cancels any review."""
        if at is None:
            self._due.pop(user_id, None)  # its entry is dropped when it comes up
            return
        self._due[user_id] = at
        queued = self._queued.get(user_id)
        if queued is None or at < queued:
            self._queued[user_id] = at
            heapq.heappush(self._heap, (at, user_id))
            if len(self._heap) > 4 * len(self._queued) + 1024:
                self._compact()  # only after many moves earlier before the old ones came up

    def pop_due(self, now: float, limit: int | None = None) -> list[str]:
        """Remove and return the users due at event time ``now`` (earliest first): at most
        ``limit``, after at most ``limit`` * :data:`ENTRIES_PER_USER` entries (see
        :meth:`due_by` for whether more are due)."""
        due: list[str] = []
        heap, queued, scheduled = self._heap, self._queued, self._due
        work = len(heap) if limit is None else limit * ENTRIES_PER_USER
        while heap and heap[0][0] <= now and (limit is None or len(due) < limit) and work:
            work -= 1
            at, user_id = heapq.heappop(heap)
            if queued.get(user_id) != at:
                continue  # superseded by an earlier entry
            when = scheduled.get(user_id)
            if when is None:  # cancelled
                del queued[user_id]
            elif when != at:  # moved later: the entry moves on
                queued[user_id] = when
                heapq.heappush(heap, (when, user_id))
            else:
                del queued[user_id], scheduled[user_id]
                due.append(user_id)
        return due

    def due_by(self, now: float) -> bool:
        """Whether an entry has come up by ``now`` (a user due, or one to move on)."""
        return bool(self._heap) and self._heap[0][0] <= now

    def _compact(self) -> None:
        self._heap = [(at, user_id) for user_id, at in self._queued.items()]
        heapq.heapify(self._heap)
