"""Counts and sums over sliding windows of event time, kept as one bucket per UTC day.

A window of W days at time ``now`` covers the days ``day(now) - W + 1 .. day(now)``: "the last
7 days" includes today. Buckets are plain sums, so the order events arrive in never matters.

>>> DAY = 86_400
>>> buckets = DailyBuckets(horizon_days=30)
>>> buckets.add(10 * DAY + 5, orders=1, monetary=20.0)
>>> buckets.add(3 * DAY, orders=1, monetary=5.0)
>>> buckets.total("orders", days=7, now=12 * DAY), buckets.total("monetary", days=30, now=12 * DAY)
(1, 25.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

DAY = 86_400.0


def day_of(ts: float) -> int:
    return int(ts // DAY)


@dataclass(slots=True)
class DailyBuckets:
    """Per-day sums of named amounts, for windows up to ``horizon_days`` long."""

    horizon_days: int
    days: dict[int, dict[str, float]] = field(default_factory=dict)

    def add(self, ts: float, **amounts: float) -> None:
        bucket = self.days.setdefault(day_of(ts), {})
        for name, amount in amounts.items():
            bucket[name] = bucket.get(name, 0) + amount

    def total(self, name: str, days: int, now: float) -> float:
        last = day_of(now)
        first = last - days + 1
        return sum(bucket.get(name, 0) for day, bucket in self.days.items()
                   if first <= day <= last)

    def totals(self, names: tuple[str, ...], windows: tuple[int, ...],
               now: float) -> dict[tuple[str, int], float]:
        """``total`` of every name over every window, in one pass over the days (a snapshot
        asks for 20 of them, and one pass each was a quarter of evaluating a user).

        >>> DailyBuckets(30, {10: {"orders": 1}, 3: {"orders": 2}}).totals(
        ...     ("orders",), (7, 30), now=12 * DAY)
        {('orders', 7): 1, ('orders', 30): 3}
        """
        last = day_of(now)
        sums = dict.fromkeys(((name, days) for name in names for days in windows), 0)
        for day, bucket in self.days.items():
            age = last - day
            if age < 0:
                continue
            for days in windows:
                if age < days:
                    for name in names:
                        amount = bucket.get(name)
                        if amount:
                            sums[name, days] += amount
        return sums

    def prune(self, latest_ts: float) -> None:
        """Drop days no window can reach any more (evaluation is never before ``latest_ts``)."""
        if not math.isfinite(latest_ts):  # no event yet: nothing to drop
            return
        oldest = day_of(latest_ts) - self.horizon_days + 1
        for day in [day for day in self.days if day < oldest]:
            del self.days[day]

    def to_dict(self) -> dict[str, Any]:
        """Compact: the names once, then a row of amounts per day (a year of daily buckets
        is most of a long-lived user's stored state).

        >>> buckets = DailyBuckets(30, {20000: {"orders": 1, "monetary": 2500}, 20001: {}})
        >>> buckets.to_dict()
        {'names': ['monetary', 'orders'], 'rows': [[20000, 2500, 1], [20001, 0, 0]]}
        >>> DailyBuckets.from_dict(buckets.to_dict(), 30).days[20000]
        {'monetary': 2500, 'orders': 1}
        """
        names = sorted({name for bucket in self.days.values() for name in bucket})
        rows = [[day, *(bucket.get(name, 0) for name in names)]
                for day, bucket in sorted(self.days.items())]
        return {"names": names, "rows": rows}

    @classmethod
    def from_dict(cls, state: dict[str, Any], horizon_days: int) -> DailyBuckets:
        if "rows" not in state:  # the earlier form: day -> {name: amount}
            return cls(horizon_days, {int(day): dict(bucket) for day, bucket in state.items()})
        names = state["names"]
        return cls(horizon_days, {row[0]: {name: amount for name, amount
                                           in zip(names, row[1:], strict=True) if amount}
                                  for row in state["rows"]})
