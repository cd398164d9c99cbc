"""Sessions: runs of activity split by an inactivity gap, exact under out-of-order arrival.

The activity that a late event could still fall next to (within ``lateness + gap`` of the
latest event) is kept as **runs**: [first, last] timestamps of events each within the gap of
the one before. A run stands for its events exactly: a late event joins a run if it lies within
the gap of it, and bridges two runs if it lies within the gap of both; it never needs the
events inside. So the state grows with the sessions in the window, not with the events (a user
with hundreds of clicks a day kept hundreds of timestamps, the largest part of their record
after their event ids). Older runs are folded into a final count, because no accepted event can
reach them any more.

>>> sessions = SessionCounter(gap_s=1800, lateness_s=3600)
>>> for ts in (0, 600, 10_000, 5_000, 9_000):  # 5_000 and 9_000 arrive late
...     sessions.learn_one(ts)
>>> sessions.count, sessions.runs  # [0, 600] is folded: no event can reach it any more
(3, [[5000, 5000], [9000, 10000]])
>>> sessions.learn_one(6_500)  # joins the run at 5,000
>>> sessions.learn_one(7_800)  # within the gap of both runs: they are one session now
>>> sessions.count, sessions.runs
(2, [[5000, 10000]])
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class SessionCounter:
    gap_s: float
    lateness_s: float
    #: Sessions that ended before the open region, and the last timestamp folded into them.
    closed: int = 0
    closed_last_ts: float = -math.inf
    #: Sorted, disjoint runs [first, last] still open to late neighbours, more than the gap
    #: apart from each other.
    runs: list[list[float]] = field(default_factory=list)

    def learn_one(self, ts: float, horizon: float | None = None) -> None:
        """``horizon``: no event older than this can arrive any more (default: the latest
        timestamp less the lateness)."""
        self.learn_run(ts, ts)
        latest_reach = self.runs[-1][1] - self.lateness_s
        cutoff = (latest_reach if horizon is None else min(latest_reach, horizon)) - self.gap_s
        fold = 0
        while fold < len(self.runs) and self.runs[fold][1] < cutoff:
            fold += 1
        if fold:
            folded, self.runs = self.runs[:fold], self.runs[fold:]
            self.closed += _starts(folded, self.closed_last_ts, self.gap_s)
            self.closed_last_ts = folded[-1][1]

    def learn_run(self, first: float, last: float) -> None:
        """Events from ``first`` to ``last``, each within the gap of the one before (one
        timestamp: ``first == last``): merged with every run within the gap of them."""
        gap, runs = self.gap_s, self.runs
        # The runs that end at or after first - gap and start at or before last + gap.
        low = bisect.bisect_left(runs, first - gap, key=lambda run: run[1])
        high = low
        while high < len(runs) and runs[high][0] <= last + gap:
            high += 1
        if high > low:
            first, last = min(first, runs[low][0]), max(last, runs[high - 1][1])
        runs[low:high] = [[first, last]]

    @property
    def count(self) -> int:
        return self.closed + _starts(self.runs, self.closed_last_ts, self.gap_s)

    def merge(self, other: SessionCounter) -> None:
        """Add another counter's sessions (a visitor's, at login)."""
        self.closed += other.closed
        for first, last in other.runs:
            self.learn_run(first, last)

    def to_dict(self) -> dict[str, Any]:
        last = None if math.isinf(self.closed_last_ts) else self.closed_last_ts
        return {"closed": self.closed, "closed_last_ts": last, "runs": self.runs}

    @classmethod
    def from_dict(cls, state: dict[str, Any], gap_s: float, lateness_s: float) -> SessionCounter:
        """From :meth:`to_dict`; records stored before runs list every open timestamp."""
        last = state["closed_last_ts"]
        counter = cls(gap_s, lateness_s, state["closed"], -math.inf if last is None else last)
        if "runs" in state:
            counter.runs = [list(run) for run in state["runs"]]
        for ts in state.get("open_ts", ()):
            counter.learn_run(ts, ts)
        return counter


def _starts(runs: list[list[float]], previous_ts: float, gap_s: float) -> int:
    """How many of the sorted runs start a new session after ``previous_ts`` (a run starts
    one unless it is within the gap of the one before: only the first can be)."""
    starts = 0
    for first, last in runs:
        if first - previous_ts > gap_s:
            starts += 1
        previous_ts = last
    return starts
