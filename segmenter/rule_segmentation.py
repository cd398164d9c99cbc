"""Marketers' rule segments as segmentations: each rule is a segmentation with one segment.

A user is in segment ``vip`` of segmentation ``vip`` while the rule holds, so a user can be in
any number of rule segments and each entry or exit is its own change event. Rules that read
features which change with time alone (days since, windows, abandonment, engagement) are
re-checked at least once a day of event time.

>>> from segmenter.rules import compile_rule
>>> vip = RuleSegmentation(compile_rule("vip", "monetary >= 1000", ["monetary"]))
>>> vip.predict_one({"monetary": 1200.0}), vip.predict_one({"monetary": 10.0})
('vip', None)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from segmenter.rules import Rule

TIME_DEPENDENT = re.compile(r"^days_since_|_\d+d$|^abandoned_cart$|^engagement$")


class RuleSegmentation:
    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.name = rule.name
        self.time_dependent = any(TIME_DEPENDENT.search(f) for f in rule.features)

    def predict_one(self, features: Mapping[str, float]) -> str | None:
        return self.name if self.rule.holds(features) else None

    def review_after_days(self, features: Mapping[str, float]) -> float | None:
        return 1.0 if self.time_dependent else None

    def descriptions(self) -> dict[str, str]:
        return {self.name: self.rule.description or self.rule.text}
