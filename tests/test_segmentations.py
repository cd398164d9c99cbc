"""Features, RFM, lifecycle and the engine, without any I/O."""

from __future__ import annotations

import math

import pytest

from features.events import CartEvent, ClickEvent, OrderEvent
from features.profile import DAY, FeatureParams, UserFeatures
from segmenter.engine import SegmentEngine
from segmenter.lifecycle import LifecycleSegmentation
from segmenter.rfm import RfmSegmentation
from segmenter.settings import load_settings

T0 = 1_767_225_600.0  # 2026-01-01
DEFAULTS = load_settings(environ={})
#: Fixed F and M edges: scores that do not depend on who else is a customer.
SETTINGS = DEFAULTS.model_copy(update={"segmentations": DEFAULTS.segmentations.model_copy(
    update={"rfm": DEFAULTS.segmentations.rfm.model_copy(update={"scoring": "edges"})})})


def order(n: int, ts: float, total: float = 50.0, user: str = "u1") -> OrderEvent:
    return OrderEvent(event_id=f"o{n}", ts=ts, user_id=user, order_id=str(n), total=total)


def test_features_count_sessions_carts_and_orders() -> None:
    user = UserFeatures(FeatureParams(session_gap_s=1800, lateness_s=4 * 3600))
    events = [
        ClickEvent(event_id="c1", ts=T0, anonymous_id="a", page="/"),
        ClickEvent(event_id="c2", ts=T0 + 600, anonymous_id="a", page="/p/1", product_id="p1",
                   category="shoes"),
        CartEvent(event_id="k1", ts=T0 + 700, anonymous_id="a", action="add", product_id="p1",
                  category="shoes", price=30.0, quantity=2),
        ClickEvent(event_id="c3", ts=T0 + 4 * 3600, anonymous_id="a", page="/"),  # new session
        CartEvent(event_id="k2", ts=T0 + 4 * 3600 + 5, anonymous_id="a", action="remove",
                  product_id="p1", price=30.0, quantity=1),
    ]
    assert {user.learn_one(event) for event in events} == {"accepted"}
    f = user.snapshot(now=T0 + 4 * 3600 + 60)
    assert (f["page_views"], f["product_views"], f["sessions"]) == (3, 1, 2)
    assert (f["cart_adds"], f["cart_removes"]) == (1, 1)
    assert (f["open_cart"], f["open_cart_value"], f["abandoned_cart"]) == (1, 30.0, 0)
    assert user.snapshot(now=T0 + 2 * DAY)["abandoned_cart"] == 1
    assert f["orders"] == 0 and math.isinf(f["days_since_last_order"])
    assert user.top_category() == "shoes"

    user.learn_one(order(1, T0 + DAY, total=30.0))
    f = user.snapshot(now=T0 + 3 * DAY)
    assert (f["orders"], f["monetary"], f["avg_order_value"], f["open_cart"]) == (1, 30.0, 30.0, 0)
    assert f["days_since_last_order"] == pytest.approx(2.0)
    assert f["days_since_last_visit"] == pytest.approx(2.0)


def test_duplicates_count_once_and_too_late_events_are_refused() -> None:
    user = UserFeatures(FeatureParams(lateness_s=3600))
    assert [user.learn_one(order(1, T0)), user.learn_one(order(1, T0))] == [
        "accepted", "duplicate"]
    assert user.learn_one(order(2, T0 + 2 * 3600)) == "accepted"
    assert user.learn_one(order(3, T0 + 1800)) == "too_late"  # 1.5 h before the latest
    assert user.learn_one(order(4, T0 + 3600)) == "accepted"  # exactly 1 h before: in time
    assert user.snapshot(T0 + DAY)["orders"] == 3
    copy = UserFeatures.from_dict(user.to_dict(), user.params)
    assert copy.snapshot(T0 + DAY) == user.snapshot(T0 + DAY)
    assert copy.learn_one(order(4, T0 + 3600)) == "duplicate"
    fresh = UserFeatures.from_dict(UserFeatures(user.params).to_dict(), user.params)
    assert math.isinf(fresh.first_seen) and fresh.snapshot(T0)["orders"] == 0


@pytest.mark.parametrize(("orders", "monetary", "days", "segment"), [
    (12, 2500.0, 2, "champions"),
    (6, 500.0, 20, "loyal"),
    (2, 120.0, 5, "potential_loyalist"),
    (1, 20.0, 3, "new_customers"),
    (1, 20.0, 20, "promising"),
    (3, 200.0, 45, "need_attention"),
    (1, 60.0, 45, "about_to_sleep"),
    (12, 2500.0, 100, "cant_lose_them"),
    (5, 400.0, 100, "at_risk"),
    (1, 60.0, 100, "hibernating"),
    (1, 20.0, 300, "lost"),
])
def test_every_named_rfm_segment(orders: int, monetary: float, days: float, segment: str) -> None:
    rfm = RfmSegmentation(SETTINGS.segmentations.rfm)
    features = {"orders": orders, "monetary": monetary, "days_since_last_order": days}
    assert rfm.predict_one(features) == segment


def test_rfm_scores_at_the_edges() -> None:
    rfm = RfmSegmentation(SETTINGS.segmentations.rfm)
    edge = {"orders": 10, "monetary": 1000.0, "days_since_last_order": 14.0}
    assert rfm.scores(edge) == (5, 5, 5)
    assert rfm.scores({"orders": 1, "monetary": 49.99, "days_since_last_order": 14.01}) == (4, 1, 1)
    assert rfm.scores({"orders": 9, "monetary": 999.0, "days_since_last_order": 500}) == (1, 4, 4)


@pytest.mark.parametrize(("orders", "days", "stage"), [
    (0, math.inf, "visitor"), (1, 1, "new_customer"), (2, 1, "repeat"), (5, 1, "loyal"),
    (5, 45, "loyal"), (5, 46, "lapsing"), (1, 120, "lapsing"), (9, 121, "churned"),
])
def test_lifecycle_stages(orders: int, days: float, stage: str) -> None:
    lifecycle = LifecycleSegmentation(SETTINGS.segmentations.lifecycle)
    assert lifecycle.predict_one({"orders": orders, "days_since_last_order": days}) == stage


def test_time_alone_moves_a_quiet_customer_through_the_segments() -> None:
    engine = SegmentEngine(SETTINGS)
    record = engine.new_record()
    orders = [order(n, T0 + n * 7 * DAY, total=250.0) for n in range(6)]
    engine.learn("u1", record, orders, orders[-1].ts)
    assert record.segments == {"rfm": "champions", "lifecycle": "loyal", "vip": "vip"}
    last = orders[-1].ts
    seen = []
    now = last
    while record.review_at is not None:
        now = record.review_at
        for change in engine.review("u1", record, now):
            seen.append((round((now - last) / DAY), change.segmentation, change.current))
            assert change.cause == f"time@{now:.3f}" and change.ts == now
    assert seen == [
        (14, "rfm", "loyal"),
        (45, "lifecycle", "lapsing"),
        (60, "rfm", "cant_lose_them"),
        (120, "lifecycle", "churned"),
        # vip (monetary_365d >= 1000) holds until the third order, 21 days before the last,
        # leaves the 365-day window
        (344, "vip", None),
    ]
    assert record.segments == {"rfm": "cant_lose_them", "lifecycle": "churned"}


def test_record_round_trip_and_change_ids_are_deterministic() -> None:
    engine = SegmentEngine(SETTINGS)
    record, replay = engine.new_record(), engine.new_record()
    changes = engine.learn("u1", record, [order(1, T0)], T0)
    again = engine.learn("u1", replay, [order(1, T0)], T0)
    assert [c.event_id for c in changes] == [c.event_id for c in again]
    assert engine.learn("u1", record, [order(1, T0)], T0) == []  # duplicate: no change
    restored = engine.load_record(record.to_bytes())
    assert restored.segments == record.segments and restored.review_at == record.review_at
    assert restored.changes_made == record.changes_made == len(changes)


def test_a_transition_that_recurs_with_the_same_cause_gets_a_new_id() -> None:
    """Quantile shifts while no input arrives all happen at one event time: the same move
    (same cause text) can come twice in a user's history, after an event moved them back."""
    engine = SegmentEngine(SETTINGS)
    record = engine.new_record()
    engine.learn("u1", record, [order(1, T0)], T0)
    record.set_segment("lifecycle", "repeat", T0)  # as if moved there and back meanwhile
    stored = record.to_bytes()
    first = engine.rescore("u1", record, T0 + 60)
    record.set_segment("lifecycle", "repeat", T0)
    second = engine.rescore("u1", record, T0 + 60)
    assert [(c.previous, c.current, c.cause) for c in first] == [
        (c.previous, c.current, c.cause) for c in second] == [
        ("repeat", "new_customer", f"population@{T0 + 60:.3f}")]
    assert first[0].event_id != second[0].event_id
    # the same stored state replayed gives the same id again
    assert engine.rescore("u1", engine.load_record(stored), T0 + 60)[0].event_id == \
        first[0].event_id


def test_a_good_customer_who_stops_buying_drifts_to_at_risk() -> None:
    engine = SegmentEngine(SETTINGS)
    record = engine.new_record()
    orders = [order(n, T0 + n * 10 * DAY, total=100.0) for n in range(5)]  # F=4, M=4
    engine.learn("u1", record, orders, orders[-1].ts)
    assert record.segments["rfm"] == "champions"
    assert [(c.segmentation, c.current) for c in engine.review(
        "u1", record, orders[-1].ts + 59 * DAY) if c.segmentation in ("rfm", "lifecycle")] == [
        ("rfm", "loyal"), ("lifecycle", "lapsing")]
    assert [(c.segmentation, c.current) for c in engine.review(
        "u1", record, orders[-1].ts + 61 * DAY) if c.segmentation in ("rfm", "lifecycle")] == [
        ("rfm", "at_risk")]


def test_every_feature_is_documented() -> None:
    from pathlib import Path

    from features.definitions import _BASE_FEATURES, MODEL_FEATURES, WINDOWED

    docs = (Path(__file__).resolve().parent.parent / "docs" / "features.md").read_text()
    for name in [*_BASE_FEATURES, *MODEL_FEATURES, *(f"{n}_{{W}}d" for n in WINDOWED)]:
        assert f"`{name}`" in docs, name


def test_a_minimum_dwell_defers_leaving_and_reviews_when_it_ends() -> None:
    engine = SegmentEngine(SETTINGS)
    engine.dwell = {"lifecycle": 3600.0}
    record = engine.new_record()
    engine.learn("u1", record, [order(1, T0)], T0)
    assert record.segments["lifecycle"] == "new_customer"
    # A second order 10 minutes later would move the user at once; the dwell holds them.
    changes = engine.learn("u1", record, [order(2, T0 + 600)], T0 + 600)
    assert [c.segmentation for c in changes] == ["rfm"]  # new_customers -> potential_loyalist
    assert record.segments["lifecycle"] == "new_customer"
    assert record.review_at == T0 + 3600
    moved = engine.review("u1", record, T0 + 3600)
    assert [(c.previous, c.current) for c in moved] == [("new_customer", "repeat")]
    assert record.entered["lifecycle"] == T0 + 3600
