"""Value tiers: customers ranked by their predicted value (:mod:`segmenter.clv`).

The tiers' lower bounds are the population's quantiles of predicted value, fixed when the
trainer fits the value model, so a customer's tier changes only with their own prediction
(their orders, or time passing without one) or with a new fit. Until the first fit, and for
users without orders, there is no tier.

>>> from segmenter.clv import BuyTillYouDie, ValueModel
>>> from segmenter.settings import load_settings
>>> tiers = ValueTierSegmentation(load_settings(environ={}).segmentations.value)
>>> tiers.predict_one({"orders": 3, "predicted_value": 120.0}) is None  # no model yet
True
>>> params = BuyTillYouDie(r=0.243, alpha=4.414, a=0.793, b=2.426, p=6.25, q=3.74, gamma=15.44)
>>> tiers.model = ValueModel(params, 52, [("top", 100.0), ("high", 50.0), ("low", 0.0)], 900)
>>> tiers.predict_one({"orders": 3, "predicted_value": 120.0})
'top'
>>> tiers.predict_one({"orders": 0, "predicted_value": 0.0}) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segmenter.clv import VALUE_FEATURES, ValueModel
from segmenter.segmentation_settings import ValueSettings


class ValueTierSegmentation:
    """Segment: the customer's value tier under the current value model."""

    name = "value_tier"

    def __init__(self, settings: ValueSettings) -> None:
        self.settings = settings
        self.model: ValueModel | None = None

    def features(self, features: Mapping[str, Any]) -> dict[str, float]:
        """What the value model adds to a user's features (zeros before a model)."""
        if self.model is None:
            return dict.fromkeys(VALUE_FEATURES, 0.0)
        return self.model.predict(features)

    def predict_one(self, features: Mapping[str, Any]) -> str | None:
        if self.model is None or features["orders"] <= 0:
            return None
        return self.model.tier(features["predicted_value"])

    def review_after_days(self, features: Mapping[str, Any], now: float) -> float | None:
        """A prediction falls while a customer does not order: look again now and then."""
        if self.model is None or features["orders"] <= 0:
            return None
        return self.settings.review_days

    def descriptions(self) -> dict[str, str]:
        return {tier.name: tier.description for tier in self.settings.tiers}
