"""RFM as shipped (scoring: quantiles): every named segment, and the moves time alone or the
population alone cause, against scores worked out by hand from mid-ranks in this file."""

from __future__ import annotations

import math

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


def hand_quintile(below: int, equal: int, size: int) -> int:
    """Mid-rank quintile, as docs/outputs.md states it: share below plus half the equal."""
    return max(1, min(5, 1 + math.floor(5 * (below + equal / 2) / size)))


def hand_scores(i: int, days: float) -> tuple[int, int, int]:
    r = 5 if days <= 14 else 4 if days <= 30 else 3 if days <= 60 else 2 if days <= 120 else 1
    f = hand_quintile(20 * (orders_of(i) - 1), 20, CUSTOMERS)
    m = hand_quintile(i, 1, CUSTOMERS)  # spends are distinct and ascending with i
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
    f = hand_quintile(80, 20, 160)
    m = hand_quintile(90, 1, 160)
    assert (f, m) == (3, 3)
    assert [(c.previous, c.current, c.cause) for c in changes if c.segmentation == "rfm"] == [
        ("champions", "potential_loyalist", f"population@{NOW:.3f}")]
