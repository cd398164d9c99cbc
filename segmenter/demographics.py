"""Who and where as segmentations: the user's country, and their age band.

Both come from profile traits (see :mod:`features.traits`); a user whose trait is unknown is in
no segment of the segmentation. Age moves with time, so the age band says when to look again:
the user's next birthday year boundary (1 January, UTC) is when their age, as the features
count it, goes up.

>>> bands = AgeBandSegmentation([18, 25, 35, 45, 55, 65])
>>> bands.predict_one({"age": 30.0}), bands.predict_one({"age": 16.0})
('25_34', 'under_18')
>>> bands.predict_one({"age": 70.0}), bands.predict_one({"age": float("nan")}) is None
('65_plus', True)
>>> CountrySegmentation().predict_one({"country": "DE"}), CountrySegmentation().predict_one(
...     {"country": ""})
('DE', None)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

DAY = 86_400.0


class CountrySegmentation:
    """Segment: the user's country (ISO 3166 code) from their latest profile event."""

    name = "country"
    #: Its segments are whatever countries come: each gets a profile when it first has members.
    open_ended = True

    def predict_one(self, features: Mapping[str, Any]) -> str | None:
        return features.get("country") or None

    def review_after_days(self, features: Mapping[str, Any], now: float) -> float | None:
        return None

    def descriptions(self) -> dict[str, str]:
        return {}  # one segment per country seen; each is described by its name


class AgeBandSegmentation:
    """Segment: the user's age band, e.g. ``25_34``, from ascending band edges."""

    name = "age_band"

    def __init__(self, edges: list[int]) -> None:
        self.edges = list(edges)
        self.bands = [f"under_{self.edges[0]}"] + [
            f"{low}_{high - 1}" for low, high in zip(self.edges, self.edges[1:], strict=False)
        ] + [f"{self.edges[-1]}_plus"]

    def predict_one(self, features: Mapping[str, Any]) -> str | None:
        age = features.get("age", math.nan)
        if not isinstance(age, int | float) or math.isnan(age):
            return None
        return self.bands[bisect.bisect_right(self.edges, age)]

    def review_after_days(self, features: Mapping[str, Any], now: float) -> float | None:
        """Days until the next 1 January (UTC): ages count whole calendar years."""
        age = features.get("age", math.nan)
        if not isinstance(age, int | float) or math.isnan(age) or age >= self.edges[-1]:
            return None
        year = datetime.fromtimestamp(now, UTC).year
        new_year = datetime(year + 1, 1, 1, tzinfo=UTC).timestamp()
        return (new_year - now) / DAY

    def descriptions(self) -> dict[str, str]:
        described = {self.bands[0]: f"Younger than {self.edges[0]}",
                     self.bands[-1]: f"{self.edges[-1]} or older"}
        for band, low, high in zip(self.bands[1:-1], self.edges, self.edges[1:], strict=False):
            described[band] = f"Aged {low} to {high - 1}"
        return described
