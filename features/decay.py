"""Time-decayed sums: each event's weight halves every ``half_life_s`` of event time.

Kept as the sum valued at an anchor time (the latest event), so adding a late event is one
multiplication and the order of arrival does not change the result.

>>> engagement = DecayedSum(half_life_s=100.0)
>>> engagement.add(0.0, 1.0); engagement.add(100.0, 1.0)
>>> engagement.value(now=100.0), engagement.value(now=200.0)
(1.5, 0.75)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class DecayedSum:
    half_life_s: float
    anchor_ts: float = -math.inf
    anchor_value: float = 0.0

    def _factor(self, from_ts: float, to_ts: float) -> float:
        return 2.0 ** (-(to_ts - from_ts) / self.half_life_s)

    def add(self, ts: float, weight: float) -> None:
        if ts > self.anchor_ts:
            carried = 0.0
            if self.anchor_value:
                carried = self.anchor_value * self._factor(self.anchor_ts, ts)
            self.anchor_ts, self.anchor_value = ts, carried + weight
        else:
            self.anchor_value += weight * self._factor(ts, self.anchor_ts)

    def value(self, now: float) -> float:
        if not self.anchor_value:
            return 0.0
        return self.anchor_value * self._factor(self.anchor_ts, max(now, self.anchor_ts))

    def to_dict(self) -> dict[str, Any]:
        return {"anchor_ts": None if math.isinf(self.anchor_ts) else self.anchor_ts,
                "anchor_value": self.anchor_value}

    @classmethod
    def from_dict(cls, state: dict[str, Any], half_life_s: float) -> DecayedSum:
        anchor = state["anchor_ts"]
        return cls(half_life_s, -math.inf if anchor is None else anchor, state["anchor_value"])
