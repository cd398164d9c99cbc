"""RFM as shipped (scoring: quantiles): every named segment, and the moves time alone or the
population alone cause, against scores worked out by hand in this file; and a shop with a real
skew (most customers buy once, a long tail buys often) filling the grid as a marketer expects."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from features.events import OrderEvent
from features.profile import DAY
from segmenter.engine import SegmentEngine, UserRecord
from segmenter.rfm import RfmSegmentation
from segmenter.settings import load_settings

NOW = 1_767_225_600.0  # 2026-01-01
SETTINGS = load_settings(environ={})
CUSTOMERS = 100


def orders_of(i: int) -> int:
    """Customers 0-19 have 1 order, 20-39 have 2, ... 80-99 have 5: F is their fifth."""
    return 1 + i // 20


def spend_of(i: int) -> float:
    # 5% apart: never two customers in one 1% money bin, so online and exact ranks agree.
    return round(10 * 1.05**i, 2)


def hand_quintile(below: int, size: int) -> int:
    """Quintile as docs/outputs.md states it: by the share of customers strictly below."""
    return max(1, min(5, 1 + math.floor(5 * below / size)))


def hand_scores(i: int, days: float) -> tuple[int, int, int]:
    r = 5 if days <= 14 else 4 if days <= 30 else 3 if days <= 60 else 2 if days <= 120 else 1
    f = hand_quintile(20 * (orders_of(i) - 1), CUSTOMERS)
    m = hand_quintile(i, CUSTOMERS)  # spends are distinct and ascending with i
    return r, f, m


#: Named segment -> (customer index, days since their last order); F = M = quintile of i.
CASES = {
    "champions": (90, 3), "loyal": (70, 40), "potential_loyalist": (30, 20),
    "new_customers": (5, 2), "promising": (6, 20), "need_attention": (50, 45),
    "about_to_sleep": (31, 50), "cant_lose_them": (91, 90), "at_risk": (51, 100),
    "hibernating": (7, 100), "lost": (8, 200),
}
DAYS = {i: days for i, days in CASES.values()}


def history(i: int) -> list[OrderEvent]:
    last = NOW - DAYS.get(i, 1) * DAY
    n = orders_of(i)
    return [OrderEvent(event_id=f"c{i}-o{k}", ts=last - k * 3600, user_id=f"c{i}",
                       order_id=f"{i}-{k}", total=round(spend_of(i) / n, 2) if k else
                       round(spend_of(i) - round(spend_of(i) / n, 2) * (n - 1), 2))
            for k in range(n)]


@pytest.fixture(scope="module")
def shop() -> tuple[SegmentEngine, dict[str, UserRecord]]:
    engine = SegmentEngine(SETTINGS)
    records = {f"c{i}": engine.new_record() for i in range(CUSTOMERS)}
    for i in range(CUSTOMERS):
        engine.learn(f"c{i}", records[f"c{i}"], history(i), NOW)
    assert engine.refresh_population() == set(records)  # the first refresh scores everyone
    for user, record in records.items():
        engine.rescore(user, record, NOW)
    return engine, records


@pytest.mark.parametrize("segment", sorted(CASES))
def test_every_named_segment_from_population_quintiles(
    shop: tuple[SegmentEngine, dict[str, UserRecord]], segment: str
) -> None:
    engine, records = shop
    i, days = CASES[segment]
    record = records[f"c{i}"]
    rfm = next(s for s in engine.segmentations if isinstance(s, RfmSegmentation))
    snapshot = record.features.snapshot(NOW)
    assert snapshot["monetary"] == spend_of(i) and snapshot["orders"] == orders_of(i)
    assert rfm.scores(snapshot) == hand_scores(i, days)
    assert record.segments["rfm"] == segment


def test_time_alone_takes_a_quiet_champion_down_to_lost(
    shop: tuple[SegmentEngine, dict[str, UserRecord]]
) -> None:
    engine, records = shop
    record = engine.load_record(records["c90"].to_bytes())  # a copy: the shop stays as it is
    last = NOW - 3 * DAY
    seen = []
    while record.review_at is not None and record.review_at < NOW + 400 * DAY:
        due = record.review_at
        for change in engine.review("c90", record, due):
            if change.segmentation == "rfm":
                assert change.cause == f"time@{due:.3f}"
                seen.append((round((due - last) / DAY), change.current))
    # F = M = 5: champions -> loyal (R 4: 15-30 days) -> loyal (R 3) -> cant_lose_them (R 2)
    assert seen == [(14, "loyal"), (60, "cant_lose_them")]
    assert record.segments["rfm"] == "cant_lose_them"  # R 1 with FM 5 is still cant_lose_them


def test_the_population_alone_moves_a_customer_whose_spend_falls_behind() -> None:
    engine = SegmentEngine(SETTINGS)
    records = {f"c{i}": engine.new_record() for i in range(CUSTOMERS)}
    for i in range(CUSTOMERS):
        engine.learn(f"c{i}", records[f"c{i}"], history(i), NOW)
    engine.refresh_population()
    for user, record in records.items():
        engine.rescore(user, record, NOW)
    assert records["c90"].segments["rfm"] == "champions"
    # 60 newcomers each order 6 times and spend more than anyone: c90 falls to the middle
    for n in range(60):
        user = f"big{n}"
        records[user] = engine.new_record()
        engine.learn(user, records[user], [
            OrderEvent(event_id=f"{user}-{k}", ts=NOW - k * 3600, user_id=user,
                       order_id=f"{user}-{k}", total=5000.0 + n) for k in range(6)], NOW)
    moved = engine.refresh_population()
    assert "c90" in moved
    changes = engine.rescore("c90", records["c90"], NOW)
    # among 160: 80 have fewer orders than c90's 5, 20 as many; 90 spend less, 69 more
    f = hand_quintile(80, 160)
    m = hand_quintile(90, 160)
    assert (f, m) == (3, 3)
    assert [(c.previous, c.current, c.cause) for c in changes if c.segmentation == "rfm"] == [
        ("champions", "potential_loyalist", f"population@{NOW:.3f}")]


def skewed_shop(customers: int = 2_000) -> dict[str, list[OrderEvent]]:
    """55% buy once, 20% twice, 10% three times, then a long tail up to 40 orders; spend per
    order log-normal; the last order anywhere in the past 400 days."""
    rng = random.Random(7)
    shop = {}
    for i in range(customers):
        draw = rng.random()
        count = (1 if draw < 0.55 else 2 if draw < 0.75 else 3 if draw < 0.85
                 else min(40, 3 + int(rng.paretovariate(1.2))))
        last = NOW - rng.uniform(0, 400) * DAY
        shop[f"s{i}"] = [OrderEvent(
            event_id=f"s{i}-{k}", ts=last - k * rng.uniform(5, 40) * DAY, user_id=f"s{i}",
            order_id=f"s{i}-{k}", total=round(rng.lognormvariate(3.8, 0.7), 2))
            for k in range(count)]
    return shop


def test_a_skewed_shop_fills_the_grid_as_a_marketer_expects() -> None:
    engine = SegmentEngine(SETTINGS)
    shop = skewed_shop()
    records = {user: engine.new_record() for user in shop}
    for user, orders in shop.items():
        engine.learn(user, records[user], sorted(orders, key=lambda o: o.ts), NOW)
    engine.refresh_population()
    for user, record in records.items():
        engine.rescore(user, record, NOW)
    rfm = next(s for s in engine.segmentations if isinstance(s, RfmSegmentation))
    scores = {user: rfm.scores(record.features.snapshot(NOW)) for user, record in records.items()}
    segment = {user: record.segments["rfm"] for user, record in records.items()}
    once = [user for user, orders in shop.items() if len(orders) == 1]
    assert {scores[user][1] for user in once} == {1}  # the lowest tie group scores F=1
    recent_once = [user for user in once if scores[user][0] >= 4]
    assert recent_once and all(
        segment[user] == ("new_customers" if scores[user][0] == 5 else "promising")
        for user in recent_once)
    twice = [user for user, orders in shop.items() if len(orders) == 2]
    assert not [user for user in twice if segment[user] == "champions"]
    sizes = Counter(segment.values())
    assert sizes["champions"] > 0 and sizes["new_customers"] > 0 and sizes["promising"] > 0
    assert len(sizes) >= 10, sizes  # all but at most one of the 11 named segments
    # F spreads over the repeat buyers: 2, 3 and 4 orders score apart.
    f_of = {len(shop[user]): scores[user][1] for user in shop}
    assert f_of[1] < f_of[2] < f_of[3] < f_of[4]
