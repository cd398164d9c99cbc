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

    def prune(self, latest_ts: float) -> None:
        """Drop days no window can reach any more (evaluation is never before ``latest_ts``)."""
        oldest = day_of(latest_ts) - self.horizon_days + 1
        for day in [day for day in self.days if day < oldest]:
            del self.days[day]

    def to_dict(self) -> dict[str, Any]:
        return {str(day): bucket for day, bucket in self.days.items()}

    @classmethod
    def from_dict(cls, state: dict[str, Any], horizon_days: int) -> DailyBuckets:
        return cls(horizon_days, {int(day): dict(bucket) for day, bucket in state.items()})
