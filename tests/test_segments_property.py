"""Segment assignments online equal a plain batch recomputation over the same events.

A few users' orders (in three currencies, re-sent by a retrying exporter under new event ids,
cancelled, refunded in part or in full) and clicks arrive shuffled within the allowed lateness,
duplicated, a few at a time, through the same steps a worker takes: currency conversion, then
the engine folding each delivery in as it comes. The batch side converts and sorts the
distinct events once and evaluates each user at the end. After both are evaluated at the same
final event time (population quantiles refreshed), every user's segments must be equal: RFM,
lifecycle and the rule segments of config/segments.yaml.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.events import EVENT_TYPES, ShopEvent
from features.money import Currencies
from segmenter.engine import SegmentEngine
from segmenter.records import UserRecord
from segmenter.settings import load_settings

SETTINGS = load_settings(environ={})
LATENESS_S = SETTINGS.features.allowed_lateness_minutes * 60
CURRENCIES = Currencies("EUR", {"USD": 0.92, "JPY": 0.0061})
T0 = 1_767_225_600.0
DAY = 86_400.0
USERS = ["u1", "u2", "u3", "u4"]
#: Each order id's placement: its time, total and currency are fixed, so a re-send is the same
#: order again.
ORDERS = {f"o{k}": (T0 + k * 9.3 * DAY + 600, round(14.5 + 23.17 * k, 2),
                    ("EUR", "USD", "JPY")[k % 3]) for k in range(12)}


def money(amount: float, currency: str) -> float:
    return round(amount / 0.0061, 0) if currency == "JPY" else amount


@st.composite
def raw_event(draw: st.DrawFn, n: int) -> dict[str, Any]:
    user = draw(st.sampled_from(USERS))
    if draw(st.integers(0, 3)) == 0:
        return {"kind": "click", "event_id": f"e{n}", "user_id": user, "page": "/p",
                "ts": T0 + draw(st.integers(0, 110 * 86_400)), "product_id": "p1"}
    order_id = draw(st.sampled_from(sorted(ORDERS)))
    ts, total, currency = ORDERS[order_id]
    # The order id decides whose order it is: a re-send never moves it to another user.
    owner = USERS[int(order_id[1:]) % len(USERS)]
    base = {"kind": "order", "event_id": f"e{n}", "user_id": owner, "order_id": order_id,
            "total": money(total, currency), "currency": currency}
    status = draw(st.sampled_from(["placed", "placed", "placed", "cancelled", "refunded"]))
    if status == "placed":
        return {**base, "ts": ts}
    if status == "cancelled":
        return {**base, "ts": ts + DAY, "status": "cancelled"}
    refund = draw(st.one_of(st.none(), st.integers(1, round(total * 100))))
    return {**base, "ts": ts + 2 * DAY, "status": "refunded",
            **({} if refund is None else {"refund": money(refund / 100, currency)})}


@st.composite
def delivered(draw: st.DrawFn) -> tuple[list[ShopEvent], list[list[ShopEvent]]]:
    """(distinct events, deliveries: batches in arrival order with duplicates), every event
    arriving at most the allowed lateness after its own time."""
    count = draw(st.integers(1, 45))
    unique = [EVENT_TYPES[e.pop("kind")].model_validate(e)
              for e in (draw(raw_event(n)) for n in range(count))]
    copies = unique + draw(st.lists(st.sampled_from(unique), max_size=12))
    delays = draw(st.lists(st.integers(0, int(LATENESS_S)), min_size=len(copies),
                           max_size=len(copies)))
    arrival = sorted(range(len(copies)), key=lambda i: (copies[i].ts + delays[i], i))
    sizes = draw(st.lists(st.integers(1, 6), min_size=len(copies), max_size=len(copies)))
    batches, start = [], 0
    for size in sizes:
        if start >= len(arrival):
            break
        batches.append([copies[i] for i in arrival[start:start + size]])
        start += size
    return unique, batches


def online(batches: list[list[ShopEvent]]) -> tuple[SegmentEngine, dict[str, UserRecord]]:
    engine = SegmentEngine(SETTINGS)
    engine.dwell = {}  # the batch has no history of entries to hold anyone to
    records: dict[str, UserRecord] = {}
    watermark = 0.0
    for batch in batches:
        converted = [CURRENCIES.to_shop(event) for event in batch]
        watermark = max(watermark, *(event.ts for event in converted))
        by_user = defaultdict(list)
        for event in converted:
            by_user[event.entity_id].append(event)
        for user, events in by_user.items():
            record = records.setdefault(user, engine.new_record())
            too_late: list[ShopEvent] = []
            engine.learn(user, record, sorted(events, key=lambda e: e.ts), watermark, too_late)
            assert not too_late  # within the lateness, nothing is refused
    return engine, records


def batch(unique: list[ShopEvent]) -> tuple[SegmentEngine, dict[str, UserRecord]]:
    engine = SegmentEngine(SETTINGS)
    by_user = defaultdict(list)
    for event in sorted((CURRENCIES.to_shop(event) for event in unique), key=lambda e: e.ts):
        by_user[event.entity_id].append(event)
    records = {user: engine.new_record() for user in by_user}
    end = max(event.ts for event in unique)
    for user, events in by_user.items():
        engine.learn(user, records[user], events, end)
    return engine, records


def final_segments(engine: SegmentEngine, records: dict[str, UserRecord],
                   at: float) -> dict[str, dict[str, str]]:
    engine.refresh_population()
    for user, record in records.items():
        engine.rescore(user, record, at)
    return {user: dict(record.segments) for user, record in records.items()}


@given(log=delivered(), later=st.integers(0, 200 * 86_400))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_online_segments_equal_a_batch_recomputation(
    log: tuple[list[ShopEvent], list[list[ShopEvent]]], later: int
) -> None:
    unique, batches = log
    at = max(event.ts for event in unique) + later  # and time passes: lapsing, churn
    online_engine, online_records = online(batches)
    batch_engine, batch_records = batch(unique)
    got = final_segments(online_engine, online_records, at)
    assert got == final_segments(batch_engine, batch_records, at)
    for user, record in online_records.items():  # the money itself, to the cent
        assert record.features.counts == batch_records[user].features.counts
