"""Sessions: runs of activity split by an inactivity gap, exact under out-of-order arrival.

Timestamps that a late event could still fall next to (within ``lateness + gap`` of the latest
one) are kept; older ones are folded into a final count, because no accepted event can reach
them any more.

>>> sessions = SessionCounter(gap_s=1800, lateness_s=3600)
>>> for ts in (0, 600, 10_000, 5_000, 9_000):  # 5_000 and 9_000 arrive late
...     sessions.learn_one(ts)
>>> sessions.count
3
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
    #: Sorted timestamps still open to late neighbours.
    open_ts: list[float] = field(default_factory=list)

    def learn_one(self, ts: float, horizon: float | None = None) -> None:
        """``horizon``: no event older than this can arrive any more (default: the latest
        timestamp less the lateness)."""
        bisect.insort(self.open_ts, ts)
        latest_reach = self.open_ts[-1] - self.lateness_s
        cutoff = (latest_reach if horizon is None else min(latest_reach, horizon)) - self.gap_s
        fold = bisect.bisect_left(self.open_ts, cutoff)
        if fold:
            folded, self.open_ts = self.open_ts[:fold], self.open_ts[fold:]
            self.closed += _starts(folded, self.closed_last_ts, self.gap_s)
            self.closed_last_ts = folded[-1]

    @property
    def count(self) -> int:
        return self.closed + _starts(self.open_ts, self.closed_last_ts, self.gap_s)

    def to_dict(self) -> dict[str, Any]:
        last = None if math.isinf(self.closed_last_ts) else self.closed_last_ts
        return {"closed": self.closed, "closed_last_ts": last, "open_ts": self.open_ts}

    @classmethod
    def from_dict(cls, state: dict[str, Any], gap_s: float, lateness_s: float) -> SessionCounter:
        last = state["closed_last_ts"]
        return cls(gap_s, lateness_s, state["closed"], -math.inf if last is None else last,
                   list(state["open_ts"]))


def _starts(sorted_ts: list[float], previous_ts: float, gap_s: float) -> int:
    """How many of the sorted timestamps start a new session after ``previous_ts``."""
    starts = 0
    for ts in sorted_ts:
        if ts - previous_ts > gap_s:
            starts += 1
        previous_ts = ts
    return starts
