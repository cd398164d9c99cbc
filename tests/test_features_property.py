"""Online features equal a batch recomputation from the same log, whatever the arrival order.

Logs are random; events are delivered late (up to the allowed lateness, never beyond), out of
order and duplicated; orders are re-sent under new event ids, cancelled and refunded. Counts
and sums must match exactly, the decayed engagement to 1e-9.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from features.definitions import feature_catalogue
from features.events import EVENT_TYPES, ShopEvent
from features.profile import ENGAGEMENT_WEIGHTS, FeatureParams, UserFeatures
from features.windows import DAY, day_of

T0 = 1_767_225_600.0
PARAMS = FeatureParams(session_gap_s=1800, lateness_s=6 * 3600, windows_days=(1, 7, 30),
                       half_life_days=3, abandon_after_s=12 * 3600, low_price=20,
                       discount_categories=frozenset({"deals"}))
CATEGORIES = ["shoes", "deals", "home", None]


@st.composite
def raw_event(draw: st.DrawFn, n: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["click", "click", "cart", "order"]))
    base = {"event_id": f"e{n}", "ts": T0 + draw(st.integers(0, 20 * 86_400)),
            "user_id": "u1", "kind": kind}
    category = draw(st.sampled_from(CATEGORIES))
    price = draw(st.integers(1, 50_000)) / 100
    if kind == "click":
        viewed = draw(st.booleans())
        return {**base, "page": "/p" if viewed else "/", "category": category,
                **({"product_id": "p1"} if viewed else {})}
    if kind == "cart":
        action = draw(st.sampled_from(["add", "add", "remove", "checkout"]))
        return {**base, "action": action, "product_id": "p1", "category": category,
                "price": price, "quantity": draw(st.integers(1, 3))}
    # A few orders, each placed (and re-sent by a retrying exporter under new event ids),
    # cancelled or refunded in part or in full, in any order.
    k = draw(st.integers(0, ORDER_IDS - 1))
    status = draw(st.sampled_from(["placed", "placed", "placed", "cancelled", "refunded"]))
    order = {**base, "order_id": f"o{k}", "total": order_total(k), "status": status}
    # A re-sent placement or cancellation is the same event again (same time, same items).
    if status == "placed":
        return {**order, "ts": T0 + k * 3.1 * 86_400 + 1_000, "items": order_items(k)}
    if status == "cancelled":
        return {**order, "ts": T0 + k * 3.1 * 86_400 + 2 * 86_400}
    if status == "refunded" and draw(st.booleans()):
        order["refund"] = draw(st.integers(1, round(order_total(k) * 100))) / 100
    return order


ORDER_IDS = 6


def order_total(k: int) -> float:
    return round(12.5 + 17.31 * k, 2)


def order_items(k: int) -> list[dict[str, Any]]:
    return [{"product_id": f"p{j}", "category": CATEGORIES[(k + j) % len(CATEGORIES)],
             "price": round(3.5 + 9 * j + k, 2), "quantity": 1 + (k + j) % 3}
            for j in range(k % 3)]


@st.composite
def delivered_log(draw: st.DrawFn) -> tuple[list[ShopEvent], list[ShopEvent]]:
    """(unique events, arrival sequence with duplicates), never later than the lateness."""
    count = draw(st.integers(1, 40))
    unique = [EVENT_TYPES[e["kind"]].model_validate(e)
              for e in (draw(raw_event(n)) for n in range(count))]
    copies = unique + draw(st.lists(st.sampled_from(unique), max_size=10))
    delays = draw(st.lists(st.integers(0, int(PARAMS.lateness_s)), min_size=len(copies),
                           max_size=len(copies)))
    # Arriving at ts + delay (delay <= lateness) never puts an event beyond the bound.
    order = sorted(range(len(copies)), key=lambda i: (copies[i].ts + delays[i], i))
    return unique, [copies[i] for i in order]


def net_orders(events: list[ShopEvent]) -> tuple[list[ShopEvent], dict[str, int]]:
    """Placed orders once per order_id, and the net cents of those still counted (not
    cancelled, not refunded in full)."""
    placed: dict[str, Any] = {}
    cancelled: set[str] = set()
    refunded: Counter[str] = Counter()
    for e in events:
        if e.kind != "order":
            continue
        if e.status == "placed":
            placed.setdefault(e.order_id, e)
        elif e.status == "cancelled":
            cancelled.add(e.order_id)
        else:
            refunded[e.order_id] += round((e.total if e.refund is None else e.refund) * 100)
    net = {}
    for order_id, e in placed.items():
        cents = round(e.total * 100)
        if order_id not in cancelled and not refunded[order_id] >= cents > 0:
            net[order_id] = max(0, cents - refunded[order_id])
    return sorted(placed.values(), key=lambda e: e.ts), net


def once(events: list[ShopEvent]) -> list[ShopEvent]:
    """The log without orders placed or cancelled again under another event id."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for e in events:
        if e.kind == "order" and e.status != "refunded":
            if (e.order_id, e.status) in seen:
                continue
            seen.add((e.order_id, e.status))
        kept.append(e)
    return kept


def open_cart(carts: list[Any], placed: list[Any]) -> dict[str, tuple[int, int]]:
    """In event time (adds, then removes, then orders within one second): adds put items in
    at their price, removes and the items an order bought take them out, an order that lists
    no items empties the cart."""
    changes = sorted([(e.ts, 0 if e.action == "add" else 1, repr([e.product_id, e.quantity,
                                                                  round(e.price * 100)]), e)
                      for e in carts if e.action != "checkout"]
                     + [(e.ts, 2, repr([None, 0, [[i.product_id, i.quantity] for i in e.items]
                                        if e.items else None]), e) for e in placed],
                     key=lambda change: change[:3])
    cart: dict[str, tuple[int, int]] = {}
    for _, kind, _, e in changes:
        if kind == 0:
            quantity = cart.get(e.product_id, (0, 0))[0] + e.quantity
            cart[e.product_id] = (quantity, round(e.price * 100))
        elif kind == 1 or e.items:
            taken = [(e.product_id, e.quantity)] if kind == 1 else [
                (i.product_id, i.quantity) for i in e.items]
            for product, quantity in taken:
                if product in cart:
                    left = cart[product][0] - quantity
                    cart[product] = (left, cart[product][1])
                    if left <= 0:
                        del cart[product]
        else:
            cart = {}
    return cart


def batch_features(events: list[ShopEvent], now: float) -> dict[str, float]:
    """Straight from the definitions in docs/outputs.md, over the whole (sorted) log."""
    events = once(sorted(events, key=lambda e: e.ts))
    placed, net = net_orders(events)
    orders = [e for e in placed if e.order_id in net]
    clicks = [e for e in events if e.kind == "click"]
    carts = [e for e in events if e.kind == "cart"]
    adds = [e for e in carts if e.action == "add"]
    last_order = max((e.ts for e in orders), default=-math.inf)
    touched = [e.ts for e in carts]
    cart = open_cart(carts, placed)
    if touched and now - max(touched) >= PARAMS.cart_expiry_s:
        cart = {}  # expired
    open_items = sum(quantity for quantity, _ in cart.values())
    open_cents = sum(quantity * cents for quantity, cents in cart.values())
    interests: Counter[str] = Counter()
    for e in clicks + adds:
        if e.category:
            interests[e.category] += 1
    items = [item for e in placed for item in e.items]
    for item in items:
        if item.category:
            interests[item.category] += item.quantity
    cents = sum(net.values())
    first, last = events[0].ts, events[-1].ts
    sessions = 1 + sum(1 for a, b in itertools.pairwise(events) if b.ts - a.ts > 1800)
    n = len(orders)
    features: dict[str, float] = {
        "orders": n, "monetary": cents / 100,
        "avg_order_value": round(cents / 100 / n, 2) if n else 0.0,
        "days_since_last_order": (now - last_order) / DAY if n else math.inf,
        "days_since_first_order": (now - orders[0].ts) / DAY if n else math.inf,
        "purchase_interval_days": ((last_order - orders[0].ts) / DAY / (n - 1)
                                   if n >= 2 else math.inf),
        "days_since_last_visit": (now - last) / DAY, "days_since_first_seen": (now - first) / DAY,
        "page_views": len(clicks), "product_views": sum(1 for e in clicks if e.product_id),
        "sessions": sessions, "cart_adds": len(adds),
        "cart_removes": sum(1 for e in carts if e.action == "remove"),
        "checkouts": sum(1 for e in carts if e.action == "checkout"),
        "days_since_last_cart": (now - max(touched)) / DAY if touched else math.inf,
        "open_cart": int(open_items > 0),
        "open_cart_value": open_cents / 100,
        "abandoned_cart": int(open_items > 0 and now - max(touched) >= PARAMS.abandon_after_s),
        "discount_affinity": (sum(i.quantity for i in items
                                  if i.price < 20 or i.category == "deals")
                              / sum(i.quantity for i in items) if items else 0.0),
        "top_category_share": (max(interests.values()) / sum(interests.values())
                               if interests else 0.0),
    }
    for days in PARAMS.windows_days:
        in_window = [e for e in events if day_of(now) - days < day_of(e.ts) <= day_of(now)]
        window_orders = [e for e in orders if day_of(now) - days < day_of(e.ts) <= day_of(now)]
        window_clicks = [e for e in in_window if e.kind == "click"]
        features[f"orders_{days}d"] = len(window_orders)
        features[f"monetary_{days}d"] = sum(net[e.order_id] for e in window_orders) / 100
        features[f"page_views_{days}d"] = len(window_clicks)
        features[f"product_views_{days}d"] = sum(1 for e in window_clicks if e.product_id)
        features[f"cart_adds_{days}d"] = sum(1 for e in in_window
                                             if e.kind == "cart" and e.action == "add")
    return features


def batch_engagement(events: list[ShopEvent], now: float) -> float:
    """Views, cart changes and each order placed (once), not cancellations or refunds."""
    half_life = PARAMS.half_life_days * DAY
    events = once(events)
    placed, _ = net_orders(events)
    counted = [e for e in events if e.kind != "order"] + placed
    return sum(ENGAGEMENT_WEIGHTS[e.kind] * 2 ** (-(now - e.ts) / half_life) for e in counted)


def accepted_count(unique: list[ShopEvent]) -> int:
    """Every event once, but an order placed or cancelled again under another event id."""
    return len(once(unique))


@settings(max_examples=300, deadline=None)
@given(log=delivered_log(), later=st.integers(0, 40 * 86_400))
def test_online_features_equal_batch_recomputation(
    log: tuple[list[ShopEvent], list[ShopEvent]], later: int
) -> None:
    unique, arrivals = log
    online = UserFeatures(PARAMS)
    outcomes = Counter(online.learn_one(event) for event in arrivals)
    assert outcomes["accepted"] == accepted_count(unique) and outcomes["too_late"] == 0
    online = UserFeatures.from_dict(online.to_dict(), PARAMS)  # as stored and recovered
    now = max(e.ts for e in unique) + later
    got = online.snapshot(now)
    expected = batch_features(unique, now)
    engagement = got.pop("engagement")
    for name, value in expected.items():
        if name.startswith("days_") or name.endswith(("_share", "_affinity", "interval_days")):
            assert math.isclose(got[name], value, rel_tol=1e-12, abs_tol=1e-9), name
        else:
            assert got[name] == value, name
    assert math.isclose(engagement, batch_engagement(unique, now), rel_tol=1e-9, abs_tol=1e-6)
    assert set(got) | {"engagement"} == set(feature_catalogue(PARAMS.windows_days))


@given(log=delivered_log())
@settings(max_examples=100, deadline=None)
def test_events_beyond_the_lateness_are_refused_and_change_nothing(
    log: tuple[list[ShopEvent], list[ShopEvent]]
) -> None:
    unique, arrivals = log
    online = UserFeatures(PARAMS)
    for event in arrivals:
        online.learn_one(event)
    before = online.snapshot(T0 + 30 * DAY)
    latest = max(e.ts for e in unique)
    stale = unique[0].model_copy(update={"event_id": "stale",
                                         "ts": latest - PARAMS.lateness_s - 1})
    assert online.learn_one(stale) == "too_late"
    assert online.snapshot(T0 + 30 * DAY) == before
