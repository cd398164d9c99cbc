"""Lifecycle stage: where a user stands in their relationship with the shop.

visitor (never ordered) -> new_customer (one order) -> repeat (two or more) -> loyal (many), and
any customer whose last order is old enough becomes lapsing, then churned.

>>> from segmenter.settings import load_settings
>>> stage = LifecycleSegmentation(load_settings(environ={}).segmentations.lifecycle)
>>> stage.predict_one({"orders": 0, "days_since_last_order": float("inf")})
'visitor'
>>> stage.predict_one({"orders": 3, "days_since_last_order": 10.0})
'repeat'
>>> stage.predict_one({"orders": 3, "days_since_last_order": 60.0})
'lapsing'
>>> stage.predict_one({"orders": 3, "days_since_last_order": 200.0})
'churned'
"""

from __future__ import annotations

from collections.abc import Mapping

from segmenter.settings import LifecycleSettings

DESCRIPTIONS = {
    "visitor": "Seen on the site, never ordered",
    "new_customer": "Placed a first order",
    "repeat": "Ordered two times or more",
    "loyal": "Orders often and recently",
    "lapsing": "Customer whose last order is getting old",
    "churned": "Customer who has not ordered for a long time",
}


class LifecycleSegmentation:
    """Every user, visitor or customer, is in exactly one lifecycle stage."""

    name = "lifecycle"

    def __init__(self, settings: LifecycleSettings) -> None:
        self.lapsing_after_days = settings.lapsing_after_days
        self.churned_after_days = settings.churned_after_days
        self.loyal_min_orders = settings.loyal_min_orders

    def predict_one(self, features: Mapping[str, float]) -> str:
        orders = features["orders"]
        if orders <= 0:
            return "visitor"
        days = features["days_since_last_order"]
        if days > self.churned_after_days:
            return "churned"
        if days > self.lapsing_after_days:
            return "lapsing"
        if orders >= self.loyal_min_orders:
            return "loyal"
        return "repeat" if orders >= 2 else "new_customer"

    def review_after_days(self, features: Mapping[str, float], now: float) -> float | None:
        """Days of event time after which the stage changes by time alone (None: never)."""
        if features["orders"] <= 0:
            return None
        days = features["days_since_last_order"]
        later = [t - days for t in (self.lapsing_after_days, self.churned_after_days) if t >= days]
        return min(later) if later else None

    def descriptions(self) -> dict[str, str]:
        return dict(DESCRIPTIONS)
