"""Online per-user features, exact in event time whatever order the events arrive in.

:class:`UserFeatures` follows River's estimator shape: ``learn_one(event)`` folds an event into
plain attributes, and ``snapshot(now)`` derives the documented features (:data:`FEATURES`) at a
point in event time. An event is accepted once (duplicates by ``event_id`` are ignored) and only
if it is no more than ``lateness_s`` older than the user's latest event; within that bound the
result does not depend on arrival order. Everything here is pure computation.

>>> from features.events import ClickEvent, OrderEvent
>>> day, t0 = 86_400.0, 1_767_225_600.0  # 2026-01-01
>>> user = UserFeatures(FeatureParams())
>>> user.learn_one(ClickEvent(event_id="c1", ts=t0, user_id="u1", page="/p/1",
...                           product_id="p1", category="shoes"))
'accepted'
>>> order = OrderEvent(event_id="o1", ts=t0 + 60, user_id="u1", order_id="1", total=80.0)
>>> user.learn_one(order), user.learn_one(order)
('accepted', 'duplicate')
>>> f = user.snapshot(now=t0 + 30 * day)
>>> f["orders"], f["monetary"], round(f["days_since_last_order"]), f["orders_7d"], f["sessions"]
(1, 80.0, 30, 0, 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from features.cart import OpenCart
from features.decay import DecayedSum
from features.definitions import DEFAULT_WINDOWS_DAYS, WINDOWED
from features.events import CartEvent, ClickEvent, OrderEvent, ProfileEvent, ShopEvent
from features.orders import OrderLedger
from features.seen_ids import SeenIds
from features.sessions import SessionCounter
from features.traits import TRAITS, Channels, Traits
from features.windows import DAY, DailyBuckets

Outcome = Literal["accepted", "duplicate", "too_late"]


@dataclass(frozen=True, slots=True)
class FeatureParams:
    """How features are computed (from config ``features``)."""

    session_gap_s: float = 30 * 60.0
    lateness_s: float = 3600.0
    windows_days: tuple[int, ...] = DEFAULT_WINDOWS_DAYS
    half_life_days: float = 14.0
    abandon_after_s: float = 3600.0
    cart_expiry_s: float = 14 * DAY
    low_price: float = 20.0
    discount_categories: frozenset[str] = frozenset({"deals"})
    #: Orders placed longer than this before the user's latest event leave the order ledger
    #: (see :mod:`features.orders`): a cancellation or refund of one no longer changes counts.
    orders_kept_s: float = 400 * DAY


ENGAGEMENT_WEIGHTS = {"click": 1.0, "cart": 3.0, "order": 10.0}


@dataclass(slots=True)
class UserFeatures:
    """Aggregates of one user's events. Attributes are plain values so the state serialises."""

    params: FeatureParams
    first_seen: float = math.inf
    last_seen: float = -math.inf
    first_order_at: float = math.inf
    last_order_at: float = -math.inf
    last_cart_at: float = -math.inf
    counts: dict[str, float] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)
    #: What is in the cart, item by item (orders take out what they bought).
    cart: OpenCart = field(default_factory=OpenCart)
    #: event_id -> ts, for events a duplicate could still arrive for.
    recent_ids: SeenIds = field(default_factory=SeenIds)
    #: Every order by order_id (placed, cancelled, refunded): counts and money are net.
    ledger: OrderLedger = field(default_factory=OrderLedger)
    traits: Traits = field(default_factory=Traits)
    channels: Channels = field(default_factory=Channels)
    days: DailyBuckets = field(init=False)
    session_counter: SessionCounter = field(init=False)
    engagement: DecayedSum = field(init=False)
    #: The last snapshot and its time, until an event or a merge changes the state: a new
    #: model version re-places every user at the same event time, and computing the same
    #: snapshot again was half of it. Not part of the state.
    _snapshot: tuple[float, dict[str, Any]] | None = field(default=None, init=False,
                                                           repr=False, compare=False)

    def __post_init__(self) -> None:
        p = self.params
        self.days = DailyBuckets(max(p.windows_days, default=1))
        self.session_counter = SessionCounter(p.session_gap_s, p.lateness_s)
        self.engagement = DecayedSum(p.half_life_days * DAY)

    def learn_one(self, event: ShopEvent, horizon: float | None = None) -> Outcome:
        """Fold one event in, unless it is a duplicate or later than the allowed lateness.

        ``horizon``: the oldest event time still accepted, from the stream's event time (the
        stream worker passes it, so that one topic running ahead of another in a backlog does
        not make the other's events late); by default the user's latest event less the
        allowed lateness. State is kept down to the horizon, so within it the result does not
        depend on arrival order.
        """
        key = self.recent_ids.unseen(event.event_id)
        if key is None:
            return "duplicate"
        self._snapshot = None
        if isinstance(event, ProfileEvent):  # who they are: not a visit, never late
            self.recent_ids.add_unseen(key, event.ts)
            self._learn_profile(event)
            return "accepted"
        if horizon is None:
            horizon = self.last_seen - self.params.lateness_s
        if event.ts < horizon:
            return "too_late"
        if isinstance(event, OrderEvent) and self.ledger.repeats(event.order_id, event.status):
            return "duplicate"  # the same order again under another event id (a retry)
        self.recent_ids.add_unseen(key, event.ts)
        self.first_seen = min(self.first_seen, event.ts)
        self.last_seen = max(self.last_seen, event.ts)
        self.session_counter.learn_one(event.ts, horizon)
        if not isinstance(event, OrderEvent) or event.status == "placed":
            self.engagement.add(event.ts, ENGAGEMENT_WEIGHTS[event.kind])
        if isinstance(event, ClickEvent):
            self._learn_click(event)
        elif isinstance(event, CartEvent):
            self._learn_cart(event)
        elif isinstance(event, OrderEvent):
            self._learn_order(event)
            self._let_go_orders()
        self._forget_unreachable(horizon)
        return "accepted"

    def _count(self, name: str, amount: float = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + amount

    def _interest(self, category: str | None, weight: int = 1) -> None:
        if category is not None:
            self.categories[category] = self.categories.get(category, 0) + weight

    def _learn_click(self, event: ClickEvent) -> None:
        viewed = event.product_id is not None
        self._count("page_views")
        self._count("product_views", viewed)
        self.days.add(event.ts, page_views=1, product_views=int(viewed))
        self._interest(event.category)
        self.channels.learn(event.ts, {"source": event.utm_source, "medium": event.utm_medium,
                                       "campaign": event.utm_campaign, "device": event.device})

    def _learn_profile(self, event: ProfileEvent) -> None:
        traits = {name: getattr(event, name) for name in TRAITS
                  if getattr(event, name) is not None}
        if event.age is not None and event.birth_year is None:
            traits["birth_year"] = _year(event.ts) - event.age
        self.traits.learn(event.ts, traits)

    def _learn_cart(self, event: CartEvent) -> None:
        if event.action == "checkout":
            self._count("checkouts")
        else:
            sign = 1 if event.action == "add" else -1
            self._count("cart_adds" if sign > 0 else "cart_removes")
            if sign > 0:
                self.days.add(event.ts, cart_adds=1)
                self._interest(event.category)
            if sign > 0:
                self.cart.add(event.ts, event.product_id, event.quantity, _cents(event.price))
            else:
                self.cart.remove(event.ts, event.product_id, event.quantity)
        self.last_cart_at = max(self.last_cart_at, event.ts)

    def _learn_order(self, event: OrderEvent) -> None:
        # Money is summed in whole cents: integer sums do not depend on the order of addition.
        refund = None if event.refund is None else _cents(event.refund)
        change = self.ledger.apply(event.order_id, event.status, event.ts, _cents(event.total),
                                   refund)
        placed_at = self.ledger.placed_at(event.order_id)
        if change and placed_at is not None:
            self._net_orders(placed_at, *change)
        if event.status != "placed":
            return
        if change and change[0] > 0:  # it counts (not cancelled or refunded before it came)
            self.first_order_at = min(self.first_order_at, event.ts)
            self.last_order_at = max(self.last_order_at, event.ts)
        # Bought, even if cancelled later: what it bought is out of the cart.
        self.cart.order(event.ts, [(item.product_id, item.quantity) for item in event.items]
                        if event.items else None)
        p = self.params
        for item in event.items:
            self._interest(item.category, item.quantity)
            self._count("items", item.quantity)
            cheap = item.price < p.low_price or item.category in p.discount_categories
            self._count("discounted_items", item.quantity * cheap)

    def _let_go_orders(self) -> None:
        """Keep the order ledger to the orders a change may still name (on order events
        only: its size is orders, and clicks need not walk it)."""
        unmatched = self.ledger.let_go(self.last_seen, self.params.orders_kept_s)
        if unmatched:
            self._count("unmatched_order_changes", unmatched)

    def _net_orders(self, placed_at: float, orders: int, cents: int) -> None:
        """Count an order's change (placed, cancelled, refunded) on the day it was placed."""
        self._count("orders", orders)
        self._count("monetary_cents", cents)
        self.days.add(placed_at, orders=orders, monetary=cents)
        if orders < 0:
            # Unless the ledger does not know every order still counted (a record stored
            # before it existed): the first and last order are those of the orders left.
            span = self.ledger.order_span(self.counts["orders"])
            if span is not None:
                self.first_order_at, self.last_order_at = span

    def merge(self, other: UserFeatures) -> None:
        """Fold another identity's history in: the visitor a customer was before logging in.

        Counts, sums, windows, interests and engagement add up exactly; sessions add up (a
        visit that spans the login counts as two).
        """
        self._snapshot = None
        for name, amount in other.counts.items():
            self._count(name, amount)
        for category, weight in other.categories.items():
            self._interest(category, weight)
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        self.first_order_at = min(self.first_order_at, other.first_order_at)
        self.last_order_at = max(self.last_order_at, other.last_order_at)
        self.last_cart_at = max(self.last_cart_at, other.last_cart_at)
        self.recent_ids.update(other.recent_ids)
        for placed_at, orders, cents in self.ledger.merge(other.ledger):
            self._net_orders(placed_at, orders, cents)
        for day, bucket in other.days.days.items():
            self.days.add(day * DAY, **bucket)
        self.cart.merge(other.cart)
        self.traits.merge(other.traits)
        self.channels.merge(other.channels)
        self.session_counter.merge(other.session_counter)
        if other.engagement.anchor_value:
            self.engagement.add(other.engagement.anchor_ts, other.engagement.anchor_value)
        self._let_go_orders()
        self._forget_unreachable()

    def _forget_unreachable(self, horizon: float = math.inf) -> None:
        """Drop what no accepted event can change any more, keeping the state small: nothing
        older than ``horizon`` or than the latest event less the allowed lateness can come."""
        horizon = min(horizon, self.last_seen - self.params.lateness_s)
        self.recent_ids.prune(horizon)
        self.cart.fold(horizon)
        self.days.prune(self.last_seen)

    def snapshot(self, now: float) -> dict[str, float]:
        """The documented features (see FEATURES) as of event time ``now`` (a copy: the
        caller may add to it)."""
        if self._snapshot is None or self._snapshot[0] != now:
            self._snapshot = (now, self._compute_snapshot(now))
        return dict(self._snapshot[1])

    def forget_snapshot(self) -> None:
        """Drop the kept snapshot (memory: it is computed again when next asked for)."""
        self._snapshot = None

    def _compute_snapshot(self, now: float) -> dict[str, float]:
        c = self.counts.get
        orders = c("orders", 0)
        monetary = c("monetary_cents", 0) / 100
        cart = self.cart.current()
        untouched = now - self.last_cart_at
        # A cart left longer than the shop keeps carts has expired: nothing is open any more.
        if untouched >= self.params.cart_expiry_s:
            cart = {}
        open_items = sum(quantity for quantity, _ in cart.values())
        open_value = sum(quantity * cents for quantity, cents in cart.values())
        features: dict[str, float] = {
            "orders": orders,
            "monetary": monetary,
            "avg_order_value": round(monetary / orders, 2) if orders else 0.0,
            "days_since_last_order": _days(now - self.last_order_at) if orders else math.inf,
            "days_since_first_order": _days(now - self.first_order_at) if orders else math.inf,
            "purchase_interval_days": (_days(self.last_order_at - self.first_order_at)
                                       / (orders - 1) if orders >= 2 else math.inf),
            "days_since_last_visit": _days(now - self.last_seen),
            "days_since_first_seen": _days(now - self.first_seen),
            "days_since_last_cart": (_days(now - self.last_cart_at)
                                     if math.isfinite(self.last_cart_at) else math.inf),
            "sessions": self.session_counter.count,
            "open_cart": int(open_items > 0),
            "open_cart_value": open_value / 100,
            "abandoned_cart": int(open_items > 0 and untouched >= self.params.abandon_after_s),
            "discount_affinity": c("discounted_items", 0) / c("items", 1) if c("items") else 0.0,
            "top_category_share": (max(self.categories.values()) / sum(self.categories.values())
                                   if self.categories else 0.0),
            "engagement": round(self.engagement.value(now), 6),
        }
        for name in ("page_views", "product_views", "cart_adds", "cart_removes", "checkouts"):
            features[name] = c(name, 0)
        features.update(self._who(now))
        totals = self.days.totals(WINDOWED, self.params.windows_days, now)
        for days in self.params.windows_days:
            for name in WINDOWED:
                total = totals[name, days]
                features[f"{name}_{days}d"] = total / 100 if name == "monetary" else total
        return features

    def _who(self, now: float) -> dict[str, Any]:
        """The profile traits and channels (text features are '' when unknown)."""
        trait = self.traits.value
        born = trait("birth_year")
        who: dict[str, Any] = {name: trait(name) or "" for name in
                               ("country", "region", "city", "gender", "language")}
        who.update(
            age=math.nan if born is None else float(_year(now) - born),
            marketing_consent=int(bool(trait("marketing_consent"))),
            preferred_channel=self.channels.preferred("source") or "",
            preferred_medium=self.channels.preferred("medium") or "",
            preferred_device=self.channels.preferred("device") or "",
            first_channel=self.channels.first_source() or "",
        )
        return who

    def interests(self) -> dict[str, float]:
        """Category -> its share of the user's views, adds and items bought (0 to 1)."""
        total = sum(self.categories.values())
        return {name: weight / total for name, weight in self.categories.items()} if total else {}

    def top_category(self) -> str | None:
        """The category with the most views, adds and items bought (ties: alphabetical)."""
        if not self.categories:
            return None
        return min(self.categories, key=lambda name: (-self.categories[name], name))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of the state (infinities become None); params are not included."""
        state: dict[str, Any] = {
            name: (None if math.isinf(getattr(self, name)) else getattr(self, name))
            for name in ("first_seen", "last_seen", "first_order_at", "last_order_at",
                         "last_cart_at")
        }
        state.update(counts=self.counts, categories=self.categories,
                     cart=self.cart.to_state(), recent_ids=self.recent_ids.to_state(),
                     orders=self.ledger.to_state(), traits=self.traits.to_state(),
                     channels=self.channels.to_state(),
                     days=self.days.to_dict(), sessions=self.session_counter.to_dict(),
                     engagement=self.engagement.to_dict())
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any], params: FeatureParams) -> UserFeatures:
        """Rebuild a state written by ``to_dict``."""
        features = cls(params, counts=dict(state["counts"]),
                       categories=dict(state["categories"]),
                       cart=_stored_cart(state),
                       recent_ids=SeenIds.from_state(state["recent_ids"]),
                       ledger=OrderLedger.from_state(state.get("orders")),
                       traits=Traits.from_state(state.get("traits")),
                       channels=Channels.from_state(state.get("channels")))
        for name, empty in (("first_seen", math.inf), ("last_seen", -math.inf),
                            ("first_order_at", math.inf), ("last_order_at", -math.inf),
                            ("last_cart_at", -math.inf)):
            setattr(features, name, empty if state[name] is None else state[name])
        features.days = DailyBuckets.from_dict(state["days"], features.days.horizon_days)
        features.session_counter = SessionCounter.from_dict(
            state["sessions"], params.session_gap_s, params.lateness_s)
        features.engagement = DecayedSum.from_dict(state["engagement"],
                                                   params.half_life_days * DAY)
        return features


def _stored_cart(state: dict[str, Any]) -> OpenCart:
    """The stored cart; a record stored before carts were kept item by item had only the
    sums since the last order: they become one item of unknown product."""
    if "cart" in state:
        return OpenCart.from_state(state["cart"])
    changes = state.get("cart_since_order", [])
    quantity = sum(change[1] for change in changes)
    if quantity <= 0:
        return OpenCart()
    value = sum(change[2] for change in changes)
    return OpenCart({"": [quantity, round(value / quantity)]})


def _year(ts: float) -> int:
    """The UTC calendar year of an epoch time."""
    return datetime.fromtimestamp(ts, UTC).year if ts > -62e9 else 1


def _cents(amount: float) -> int:
    return round(amount * 100)


def _days(seconds: float) -> float:
    return max(0.0, seconds / DAY)
