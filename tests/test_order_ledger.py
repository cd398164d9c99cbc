"""The order ledger over years of history: orders older than ``orders_kept_days`` leave it, so
a customer's stored record stays flat in the history's length, and every count and time stays
what a ledger that keeps everything gives (pure logic, no I/O)."""

from __future__ import annotations

import dataclasses

from features.events import OrderEvent
from features.orders import OrderLedger
from features.profile import FeatureParams, UserFeatures
from segmenter.records import UserRecord
from segmenter.settings import load_settings

DAY = 86_400.0
T0 = 1_700_000_000.0
KEPT = FeatureParams(orders_kept_s=400 * DAY)
EVERYTHING = dataclasses.replace(KEPT, orders_kept_s=1e12)


def order(n: int, ts: float, total: float = 50.0, **extra: object) -> OrderEvent:
    return OrderEvent(event_id=f"e{n}-{extra.get('status', 'placed')}", ts=ts, user_id="u",
                      order_id=f"o{n}", total=total, **extra)


def history(days: int, every_days: int = 10) -> list[OrderEvent]:
    return [order(n, T0 + n * every_days * DAY, total=10.0 + n) for n in range(days // every_days)]


def folded(events: list[OrderEvent], params: FeatureParams) -> UserFeatures:
    features = UserFeatures(params)
    for event in events:
        assert features.learn_one(event) == "accepted", event
    return features


def comparable(features: UserFeatures, now: float) -> dict[str, float]:
    return {**features.snapshot(now), "first": features.first_order_at,
            "last": features.last_order_at}


def test_a_long_history_keeps_a_bounded_ledger_and_the_same_features() -> None:
    sizes = {}
    for years in (1, 3, 6):
        events = history(365 * years)
        now = events[-1].ts + DAY
        kept, everything = folded(events, KEPT), folded(events, EVERYTHING)
        assert comparable(kept, now) == comparable(everything, now)
        assert len(kept.ledger.orders) <= 41  # 400 days of one order every 10 days
        if years > 1:
            count, first, _ = kept.ledger.let_go_orders or [0, 0.0, 0.0]
            assert (count, first) == (len(events) - len(kept.ledger.orders), T0)
        sizes[years] = len(UserRecord(kept).to_bytes())
    assert sizes[6] < 1.15 * sizes[1], sizes  # flat: a keep-everything ledger grows 6x


def test_cancelling_recent_orders_finds_the_last_order_among_those_let_go() -> None:
    events = history(3 * 365)
    end = events[-1].ts
    # Cancel every order of the last 100 days: the last order is then one the ledger kept...
    recent = [e for e in events if e.ts > end - 100 * DAY]
    cancels = [order(int(e.order_id[1:]), end + DAY, status="cancelled") for e in recent]
    # ...and cancelling all it keeps leaves orders it let go: their span is still known.
    kept_ids = {e.order_id for e in events if e.ts >= end - 390 * DAY}  # still held then
    all_kept = [order(int(i[1:]), end + 2 * DAY, status="cancelled")
                for i in sorted(kept_ids - {e.order_id for e in recent})]
    for cancellations in (cancels, cancels + all_kept):
        kept, everything = (folded(events + cancellations, p) for p in (KEPT, EVERYTHING))
        now = end + 3 * DAY
        assert comparable(kept, now) == comparable(everything, now)
        assert kept.last_order_at < recent[0].ts
    assert kept.counts["orders"] == len(events) - len(kept_ids)


def test_a_refund_of_an_order_let_go_changes_nothing_and_is_counted_unmatched() -> None:
    events = history(3 * 365)
    end = events[-1].ts
    kept = folded(events, KEPT)
    before = comparable(kept, end + DAY)
    refund = order(0, end + DAY / 2, total=10.0, status="refunded")  # placed 3 years ago
    assert kept.learn_one(refund) == "accepted"
    assert kept.counts["orders"] == len(events)
    money = ("orders", "monetary", "first", "last", "avg_order_value")
    assert {k: comparable(kept, end + DAY)[k] for k in money} == {k: before[k] for k in money}
    # It waits for its order as long as orders are kept, then is let go as unmatched.
    assert kept.learn_one(order(999, end + 401 * DAY)) == "accepted"
    assert kept.counts["unmatched_order_changes"] == 1
    assert "o0" not in kept.ledger.orders


def test_a_refund_before_its_order_still_waits_for_it() -> None:
    features = folded([order(1, T0 + 5 * DAY, status="refunded", refund=20.0),
                       order(2, T0 + 30 * DAY), order(1, T0 + 40 * DAY, total=50.0)], KEPT)
    assert (features.counts["orders"], features.counts["monetary_cents"]) == (2, 8000)
    assert [len(entry) for entry in features.ledger.orders.values()] == [4, 4]  # placed: trim


def test_orders_are_kept_at_least_as_long_as_an_order_may_arrive_late() -> None:
    settings = load_settings(None, environ={})
    for lateness_min, kept_days, expected_days in ((1440, 400, 400), (600_000, 400, 417.67)):
        features = settings.features.model_copy(update={
            "allowed_lateness_minutes": lateness_min, "orders_kept_days": kept_days})
        assert round(features.params().orders_kept_s / DAY, 2) == expected_days


def test_ledgers_merge_what_they_let_go_and_old_states_still_load() -> None:
    mine, theirs = OrderLedger(), OrderLedger()
    mine.apply("a", "placed", 100.0, 500, None)
    theirs.apply("b", "placed", 50.0, 700, None)
    theirs.apply("c", "placed", 900.0, 700, None)
    mine.let_go(now=300.0, kept_s=100.0)
    theirs.let_go(now=300.0, kept_s=100.0)
    mine.merge(theirs)
    assert mine.let_go_orders == [2, 50.0, 100.0]
    assert mine.order_span(3) == (50.0, 900.0)
    assert mine.order_span(4) is None  # a count the ledger cannot account for
    restored = OrderLedger.from_state(mine.to_state())
    assert (restored.orders, restored.let_go_orders) == (mine.orders, mine.let_go_orders)
    old = OrderLedger.from_state({"kept": [1.0, 500, 0, 0], "x": [None, 0, 100, 0]})
    assert old.placed_times() == [1.0] and old.let_go(now=5.0, kept_s=10.0) == 0
    assert old.orders["x"][4] == 5.0  # an old waiting change waits from now on
    assert old.let_go(now=14.0, kept_s=10.0) == 0 and old.let_go(now=16.0, kept_s=10.0) == 1
