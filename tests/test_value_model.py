"""The customer value model online: fitted by the trainer on sampled customers, published with a
model version, applied by the engine (features, value tiers, rules) and kept across a resume.

The population is drawn from the BG/NBD and Gamma-Gamma processes themselves (CDNOW's
published parameters), so the test can ask what the model is for: do customers it ranks higher
buy more in the year after the fit?
"""

from __future__ import annotations

import numpy as np
import pytest

from features.definitions import MODEL_FEATURES, feature_catalogue
from features.events import OrderEvent
from segmenter.behavior import DIMENSIONS, BehaviorModel, StatsDelta
from segmenter.behavior_trainer import BehaviorTrainer
from segmenter.engine import SegmentEngine
from segmenter.rule_segmentation import RuleSegmentation
from segmenter.rules import compile_rule
from segmenter.settings import load_settings

SETTINGS = load_settings(environ={})
BEHAVIOR = SETTINGS.segmentations.behavior.model_copy(update={"clusters": 2, "warmup_users": 20})
VALUE = SETTINGS.segmentations.value
WEEK, DAY = 7 * 86_400.0, 86_400.0
T_END = 1_780_000_000.0
#: Fader, Hardie & Lee (2005): CDNOW's BG/NBD and Gamma-Gamma parameters.
R, ALPHA, A, B, P, Q, GAMMA = 0.243, 4.414, 0.793, 2.426, 6.25, 3.74, 15.44


def shop(customers: int, seed: int) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Customer summaries at T_END (orders, first and last order time, mean order value) and
    each customer's orders in the 52 weeks after it, drawn from the models' own processes."""
    rng = np.random.default_rng(seed)
    summaries, future = {}, {}
    for n in range(customers):
        rate, dropout = rng.gamma(R, 1 / ALPHA), rng.beta(A, B)
        mean_spend = P / rng.gamma(Q, 1 / GAMMA)
        age = rng.uniform(4, 78)  # weeks since the first order
        times, t, alive = [0.0], 0.0, True
        while alive:
            t += rng.exponential(1 / rate) if rate > 0 else np.inf
            if t > age + 52:
                break
            times.append(t)
            alive = rng.random() > dropout
        past = [t for t in times if t <= age]
        spend = [rng.gamma(P, mean_spend / P) for _ in past]
        user = f"c{n}"
        summaries[user] = [float(len(past)), T_END - age * WEEK, T_END - (age - past[-1]) * WEEK,
                           float(np.mean(spend))]
        future[user] = len(times) - len(past)
    return summaries, future


def trained(customers: dict[str, list[float]]) -> tuple[BehaviorTrainer, BehaviorModel]:
    trainer = BehaviorTrainer(BEHAVIOR.model_copy(update={"reservoir_size": 10_000}),
                              value=VALUE)
    rng = np.random.default_rng(0)
    sample = {user: list(rng.normal(4.0 * (n % 2), 0.2, DIMENSIONS))
              for n, user in enumerate(customers)}
    trainer.learn(StatsDelta(sample=sample, customers=dict(customers)), offset=0)
    model = trainer.next_version(now=0.0)
    assert model is not None and model.value is not None
    return trainer, model


def features(summary: list[float]) -> dict[str, float]:
    orders, first, last, mean = summary
    return {"orders": orders, "avg_order_value": mean,
            "days_since_first_order": (T_END - first) / DAY,
            "days_since_last_order": (T_END - last) / DAY}


def test_the_trainer_fits_a_value_model_that_ranks_next_year_s_buyers() -> None:
    customers, future = shop(3000, seed=1)
    _, model = trained(customers)
    value = model.value
    assert value is not None and value.customers == 3000
    # The fit finds the parameters the shop was drawn from (a sample of 3,000, so loosely).
    assert value.params.r == pytest.approx(R, rel=0.35)
    assert value.params.q > 1
    predicted = {u: value.predict(features(s)) for u, s in customers.items()}
    # The predicted orders add up to what the shop's customers really did the next year...
    expected = sum(p["expected_orders"] for p in predicted.values())
    assert expected == pytest.approx(sum(future.values()), rel=0.2)
    # ...and the top tier holds the year's buyers: a tenth of the customers, about half the
    # next year's orders.
    tiers = {u: value.tier(p["predicted_value"]) for u, p in predicted.items()}
    shares = {t: sum(1 for v in tiers.values() if v == t) / len(tiers) for t in set(tiers.values())}
    assert shares["top"] == pytest.approx(0.1, abs=0.02)
    assert shares["low"] == pytest.approx(0.4, abs=0.05)
    top_orders = sum(future[u] for u, t in tiers.items() if t == "top")
    assert top_orders / sum(future.values()) > 0.4


def test_a_published_value_model_survives_the_topic_and_a_resume() -> None:
    customers, _ = shop(400, seed=2)
    trainer, model = trained(customers)
    copy = BehaviorModel.from_json(model.to_json())
    assert copy.value == model.value
    resumed = BehaviorTrainer(trainer.settings, copy, VALUE)
    assert resumed.value.model == model.value
    # Statistics carry the customer summaries through their topic too.
    delta = StatsDelta(customers={"c1": customers["c1"], "gone": None})
    assert StatsDelta.from_json(delta.to_json()).customers == delta.customers


def test_too_few_customers_or_no_repeat_buyers_publish_no_value_model() -> None:
    customers, _ = shop(100, seed=3)  # below min_customers
    trainer = BehaviorTrainer(BEHAVIOR, value=VALUE)
    sample = {u: [0.0] * DIMENSIONS for u in customers}
    trainer.learn(StatsDelta(sample=sample, customers=customers), offset=0)
    assert trainer.next_version(now=0.0) is None or trainer.value.model is None
    once = {u: [1.0, T_END - n * DAY, T_END - n * DAY, 30.0] for n, u in enumerate(
        f"o{n}" for n in range(300))}  # everyone bought once: nothing to learn repeat rates from
    lonely = BehaviorTrainer(BEHAVIOR, value=VALUE)
    lonely.learn(StatsDelta(sample={u: [0.0] * DIMENSIONS for u in once}, customers=once), 0)
    lonely.next_version(now=0.0)
    assert lonely.value.model is None or lonely.value.model.params.q > 1


def test_the_engine_places_customers_in_tiers_and_rules_read_the_prediction() -> None:
    customers, _ = shop(600, seed=4)
    _, model = trained(customers)
    engine = SegmentEngine(SETTINGS)
    engine.segmentations.append(_rule("likely_big_spender", "predicted_value > 100"))
    assert engine.use_model(model)  # a new value model: everyone may move
    assert not engine.use_model(BehaviorModel.from_json(model.to_json()))  # the same again
    loyal, once, visitor = engine.new_record(), engine.new_record(), engine.new_record()
    now = T_END
    orders = [_order("loyal", n, now - (300 - 30 * n) * DAY, 80.0) for n in range(10)]
    placed = engine.learn("loyal", loyal, orders, now)
    engine.learn("once", once, [_order("once", 0, now - 200 * DAY, 20.0)], now)
    assert loyal.segments["value_tier"] == "top"
    assert once.segments["value_tier"] in ("medium", "low")
    assert "value_tier" not in visitor.segments
    assert loyal.segments["likely_big_spender"] == "likely_big_spender"
    assert "likely_big_spender" not in once.segments
    assert ("value_tier", None, "top") in [(c.segmentation, c.previous, c.current)
                                           for c in placed]
    # A year without an order: the review finds the prediction fallen and the tier with it.
    assert loyal.review_at is not None and loyal.review_at <= now + VALUE.review_days * DAY + 1
    later = engine.review("loyal", loyal, now + 365 * DAY)
    assert ("value_tier", "top") in [(c.segmentation, c.previous) for c in later]


def _order(user: str, n: int, ts: float, total: float) -> OrderEvent:
    return OrderEvent(event_id=f"{user}-{n}", ts=ts, user_id=user, order_id=f"{user}-{n}",
                      total=total)


def _rule(name: str, text: str) -> RuleSegmentation:
    known = feature_catalogue(tuple(SETTINGS.features.windows_days)) | MODEL_FEATURES
    return RuleSegmentation(compile_rule(name, text, list(known)), SETTINGS.features.params())


def test_tiers_whose_shares_drift_from_their_targets_are_refitted_before_the_hour() -> None:
    from segmenter.clv import TIER_CHECK_S, ValueTrainer

    customers, _ = shop(1000, seed=5)
    trainer = ValueTrainer(VALUE)
    trainer.learn(customers)
    assert trainer.fit(0.0, customers.keys()) and trainer.model is not None
    first = trainer.model
    assert not trainer.fit(TIER_CHECK_S + 1, customers.keys())  # on target: nothing to do
    # A third of the customers order again and again: the top tier swells past its 10%.
    busy = {u: [s[0] + 20, s[1], T_END, s[3]] for u, s in list(customers.items())[::3]}
    trainer.learn(busy)
    assert trainer.fit(2 * TIER_CHECK_S + 2, customers.keys())
    assert trainer.model is not first
    assert VALUE.refit_interval_s > 2 * TIER_CHECK_S + 2
