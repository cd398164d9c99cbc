"""Classic RFM: recency, frequency and monetary scores 1-5, mapped to named segments.

R is scored on fixed day edges (``segmentations.rfm.recency_days``), so that time alone moves a
quiet customer down: a purely relative recency would not move anyone if the whole shop went
quiet. F and M are scored on the quintiles of the current customer population (a
:class:`~segmenter.population.Population` kept up to date by the engine) with ``scoring:
quantiles``, or on the fixed edges in config with ``scoring: edges``. The named segments are
looked up on the R score, the FM score (the rounded mean of F and M) and, where a segment says so,
F or M alone; first match wins.

>>> from segmenter.settings import load_settings
>>> config = load_settings(environ={}).segmentations.rfm.model_copy(update={"scoring": "edges"})
>>> rfm = RfmSegmentation(config)
>>> champion = {"orders": 12, "monetary": 2400.0, "days_since_last_order": 3.0}
>>> rfm.scores(champion), rfm.predict_one(champion)
((5, 5, 5), 'champions')
>>> rfm.predict_one({**champion, "days_since_last_order": 100.0})
'cant_lose_them'
>>> rfm.predict_one({"orders": 0, "monetary": 0.0, "days_since_last_order": float("inf")}) is None
True
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

from segmenter.population import Population
from segmenter.settings import RfmSettings


class RfmSegmentation:
    """Customers (one order or more) get an RFM segment; visitors get none."""

    name = "rfm"

    def __init__(self, settings: RfmSettings, population: Population | None = None) -> None:
        self.population = population if settings.scoring == "quantiles" else None
        self.recency_days = list(settings.recency_days)
        self.frequency_orders = list(settings.frequency_orders)
        self.monetary = list(settings.monetary)
        self.segments = list(settings.segments)
        self.settings = settings

    def scores(self, features: Mapping[str, float]) -> tuple[int, int, int]:
        """(R, F, M), each 1-5; 5 is best (most recent, most orders, most spent)."""
        # bisect_left: a value equal to an edge still earns that edge's score.
        r = 5 - bisect.bisect_left(self.recency_days, features["days_since_last_order"])
        if self.population is not None:
            return (r, self.population.score("orders", features["orders"]),
                    self.population.score("monetary", features["monetary"]))
        f = 1 + bisect.bisect_right(self.frequency_orders, features["orders"])
        m = 1 + bisect.bisect_right(self.monetary, features["monetary"])
        return r, f, m

    def predict_one(self, features: Mapping[str, float]) -> str | None:
        if features["orders"] <= 0:
            return None
        r, f, m = self.scores(features)
        segment = self.settings.segment_for(r, f, m)
        if segment is None:
            raise AssertionError(f"settings guarantee a segment for r={r}, f={f}, m={m}")
        return segment

    def review_after_days(self, features: Mapping[str, float], now: float) -> float | None:
        """Days of event time after which the R score drops by time alone (None: never)."""
        if features["orders"] <= 0:
            return None
        days = features["days_since_last_order"]
        later = [edge - days for edge in self.recency_days if edge >= days]
        return min(later) if later else None

    def descriptions(self) -> dict[str, str]:
        return {segment.name: segment.description for segment in self.segments}
