"""Marketers' rule segments as segmentations: each rule is a segmentation with one segment.

A user is in segment ``vip`` of segmentation ``vip`` while the rule holds, so a user can be in
any number of rule segments and each entry or exit is its own change event.

Some features change with event time alone, so a rule reading them can start or stop holding
for a user who does nothing. The segmentation says when to look at such a user again, as late
as it can without missing the moment:

- ``days_since_*`` grow by one a day: the next time one reaches a number the rule compares
  with (or the value of another feature it compares with);
- ``engagement`` halves every half-life: the next time it decays below such a number;
- ``abandoned_cart`` turns 1 when the open cart has been untouched for the abandon delay, and
  the cart's features turn 0 when it has been untouched for the expiry delay;
- windowed features (``orders_30d`` ...) drop events at UTC midnight: the next midnight, but
  only while one of them is non-zero.

>>> from segmenter.rules import compile_rule
>>> known = ["monetary", "orders", "days_since_last_order"]
>>> vip = RuleSegmentation(compile_rule("vip", "monetary >= 1000", known))
>>> vip.predict_one({"monetary": 1200.0}), vip.predict_one({"monetary": 10.0})
('vip', None)
>>> once = RuleSegmentation(compile_rule("once", "orders == 1 and days_since_last_order > 30",
...                                      known))
>>> once.review_after_days({"orders": 1, "days_since_last_order": 12.5}, now=0.0)
17.5
>>> once.review_after_days({"orders": 0, "days_since_last_order": float("inf")}, now=0.0)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from features.definitions import TEXT_FEATURES
from features.profile import DAY, FeatureParams
from segmenter.rules import Rule

WINDOWED = re.compile(r"_\d+d$")
#: The open cart's features: they change by time alone when it is abandoned, then expires.
CART_FEATURES = frozenset({"open_cart", "open_cart_value", "abandoned_cart"})


class RuleSegmentation:
    """One rule as a segmentation: segment ``rule.name`` while the rule holds, else none."""

    def __init__(self, rule: Rule, params: FeatureParams | None = None) -> None:
        self.rule = rule
        self.name = rule.name
        self.params = params or FeatureParams()
        self.days_since = sorted(f for f in rule.features if f.startswith("days_since_"))
        self.windowed = sorted(f for f in rule.features if WINDOWED.search(f))
        self.uses_engagement = "engagement" in rule.features
        self.uses_cart = bool(CART_FEATURES & rule.features)
        # Features that only change on events: their values are thresholds too.
        self.steady = sorted(rule.features - set(self.days_since) - set(self.windowed)
                             - {"engagement"} - CART_FEATURES - TEXT_FEATURES)

    def predict_one(self, features: Mapping[str, float]) -> str | None:
        return self.name if self.rule.holds(features) else None

    def review_after_days(self, features: Mapping[str, float], now: float) -> float | None:
        """Days of event time until the rule may hold differently by time alone (None: never)."""
        later = []
        thresholds = [*self.rule.constants, *(features[f] for f in self.steady)]
        for name in self.days_since:
            value = features[name]
            if math.isfinite(value):
                later += [edge - value for edge in thresholds if edge >= value]
        if self.uses_engagement and features["engagement"] > 0:
            value, half_life = features["engagement"], self.params.half_life_days
            later += [half_life * math.log2(value / edge) for edge in thresholds
                      if 0 < edge <= value]
        if self.uses_cart and features["open_cart"]:
            # Abandoned once untouched for the abandon delay, expired (empty) after the expiry.
            for after_s in (self.params.abandon_after_s, self.params.cart_expiry_s):
                if features["days_since_last_cart"] < after_s / DAY:
                    later.append(after_s / DAY - features["days_since_last_cart"])
        if any(features[name] for name in self.windowed):
            later.append((DAY - now % DAY) / DAY)
        return min(later) if later else None

    def descriptions(self) -> dict[str, str]:
        return {self.name: self.rule.description or self.rule.text}
