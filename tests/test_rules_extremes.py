"""No rule that starts can raise on a user: every shipped rule and generated rules, over
features at their extremes (zero, huge, infinite), through both what the engine asks of a rule
segmentation (placing and the next time-driven review). Pure, no I/O."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from features.definitions import feature_catalogue
from features.profile import FeatureParams
from segmenter.rule_segmentation import RuleSegmentation
from segmenter.rules import MAX_LITERAL, RuleError, compile_rule
from segmenter.settings import load_settings

SETTINGS = load_settings()
KNOWN = sorted(feature_catalogue(tuple(SETTINGS.features.windows_days)))
EXTREMES = st.sampled_from([0.0, 1.0, 0.5, 1e10, 1e18, 1e300, math.inf, 2**63 + 1])
NUMBERS = st.one_of(st.integers(-(10**400), 10**400), st.floats(allow_nan=True),
                    st.sampled_from([MAX_LITERAL, -MAX_LITERAL, 0, 1]))
OPERATORS = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])


def features_of(values: dict[str, float]) -> dict[str, float]:
    return {name: values.get(name, 0.0) for name in KNOWN}


def place_and_review(segmentation: RuleSegmentation, features: dict[str, float]) -> None:
    segmentation.predict_one(features)
    after = segmentation.review_after_days(features, now=1_767_225_600.0)
    assert after is None or after >= 0 or math.isclose(after, 0, abs_tol=1e-9)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KNOWN), EXTREMES))
def test_every_shipped_rule_places_and_reviews_any_features(values: dict[str, float]) -> None:
    assert SETTINGS.rules, "the shipped rules are loaded"
    for rule in SETTINGS.rules:
        place_and_review(RuleSegmentation(rule, FeatureParams()), features_of(values))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KNOWN), OPERATORS, NUMBERS), min_size=1,
                max_size=4),
       st.dictionaries(st.sampled_from(KNOWN), EXTREMES))
def test_a_generated_rule_either_is_refused_at_start_or_never_raises(
        terms: list[tuple[str, str, float]], values: dict[str, float]) -> None:
    text = " or ".join(f"{name} {op} {number!r}" for name, op, number in terms)
    try:
        rule = compile_rule("generated", text, KNOWN)
    except RuleError:
        return
    place_and_review(RuleSegmentation(rule, FeatureParams()), features_of(values))
