"""Online per-user feature aggregation: one small state object per user, updated event by event.

:class:`UserFeatures` follows River's estimator shape: ``learn_one(event)`` folds an event into
plain attributes, and ``snapshot(now)`` derives the documented features at a point in event
time. Everything here is pure computation; persistence is the caller's job (``to_dict`` /
``from_dict`` give a JSON-ready form).

>>> from features.events import ClickEvent, OrderEvent
>>> day, t0 = 86_400.0, 1_767_225_600.0  # 2026-01-01
>>> user = UserFeatures()
>>> user.learn_one(ClickEvent(event_id="c1", ts=t0, user_id="u1", page="/p/1",
...                           product_id="p1", category="shoes"))
True
>>> user.learn_one(OrderEvent(event_id="o1", ts=t0 + 60, user_id="u1", order_id="1",
...                           total=80.0))
True
>>> user.learn_one(OrderEvent(event_id="o1", ts=t0 + 60, user_id="u1", order_id="1",
...                           total=80.0))  # the same event again is counted once
False
>>> f = user.snapshot(now=t0 + 30 * day)
>>> f["orders"], f["revenue"], round(f["days_since_last_order"]), f["sessions"]
(1, 80.0, 30, 1)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from features.events import CartEvent, ClickEvent, OrderEvent, ShopEvent

DAY = 86_400.0

#: The features ``snapshot`` returns: name -> (unit, definition).
FEATURES: dict[str, tuple[str, str]] = {
    "orders": ("count", "orders placed, all time"),
    "revenue": ("currency", "sum of order totals, all time"),
    "avg_order_value": ("currency", "revenue / orders (0 without orders)"),
    "days_since_last_order": ("days", "event time since the last order (inf without orders)"),
    "days_since_first_order": ("days", "event time since the first order (inf without orders)"),
    "days_since_last_visit": ("days", "event time since the user's last event of any kind"),
    "days_since_first_seen": ("days", "event time since the user's first event"),
    "page_views": ("count", "click events, all time"),
    "product_views": ("count", "click events naming a product, all time"),
    "sessions": ("count", "runs of activity split by the configured inactivity gap"),
    "cart_adds": ("count", "cart add events, all time"),
    "cart_removes": ("count", "cart remove events, all time"),
    "checkouts": ("count", "cart checkout events, all time"),
    "open_cart": ("0/1", "1 if items were added since the last order and are still in the cart"),
    "open_cart_value": ("currency", "value of the items in the open cart"),
}


@dataclass(slots=True)
class UserFeatures:
    """Aggregates of one user's events. Attributes are plain values so the state serialises."""

    session_gap_s: float = 30 * 60.0
    dedupe_window: int = 64
    first_seen: float = math.inf
    last_seen: float = -math.inf
    first_order_at: float = math.inf
    last_order_at: float = -math.inf
    orders: int = 0
    revenue: float = 0.0
    page_views: int = 0
    product_views: int = 0
    sessions: int = 0
    cart_adds: int = 0
    cart_removes: int = 0
    checkouts: int = 0
    open_cart_items: int = 0
    open_cart_value: float = 0.0
    categories: dict[str, int] = field(default_factory=dict)
    recent_event_ids: deque[str] = field(default_factory=deque)

    def learn_one(self, event: ShopEvent) -> bool:
        """Fold one event in; return False (and change nothing) for a duplicate event_id."""
        if event.event_id in self.recent_event_ids:
            return False
        self.recent_event_ids.append(event.event_id)
        while len(self.recent_event_ids) > self.dedupe_window:
            self.recent_event_ids.popleft()
        self._touch(event.ts)
        if isinstance(event, ClickEvent):
            self._learn_click(event)
        elif isinstance(event, CartEvent):
            self._learn_cart(event)
        elif isinstance(event, OrderEvent):
            self._learn_order(event)
        return True

    def _touch(self, ts: float) -> None:
        if ts - self.last_seen > self.session_gap_s:
            self.sessions += 1
        self.first_seen = min(self.first_seen, ts)
        self.last_seen = max(self.last_seen, ts)

    def _count_category(self, category: str | None, weight: int = 1) -> None:
        if category is not None:
            self.categories[category] = self.categories.get(category, 0) + weight

    def _learn_click(self, event: ClickEvent) -> None:
        self.page_views += 1
        if event.product_id is not None:
            self.product_views += 1
        self._count_category(event.category)

    def _learn_cart(self, event: CartEvent) -> None:
        if event.action == "add":
            self.cart_adds += 1
            self.open_cart_items += event.quantity
            self.open_cart_value += event.price * event.quantity
            self._count_category(event.category)
        elif event.action == "remove":
            self.cart_removes += 1
            self.open_cart_items = max(0, self.open_cart_items - event.quantity)
            self.open_cart_value = max(0.0, self.open_cart_value - event.price * event.quantity)
            if self.open_cart_items == 0:
                self.open_cart_value = 0.0
        else:
            self.checkouts += 1

    def _learn_order(self, event: OrderEvent) -> None:
        self.orders += 1
        self.revenue += event.total
        self.first_order_at = min(self.first_order_at, event.ts)
        self.last_order_at = max(self.last_order_at, event.ts)
        self.open_cart_items = 0
        self.open_cart_value = 0.0
        for item in event.items:
            self._count_category(item.category, item.quantity)

    def snapshot(self, now: float) -> dict[str, float]:
        """The documented features (see FEATURES) as of event time ``now``."""
        has_orders = self.orders > 0
        return {
            "orders": self.orders,
            "revenue": round(self.revenue, 2),
            "avg_order_value": round(self.revenue / self.orders, 2) if has_orders else 0.0,
            "days_since_last_order": _days(now - self.last_order_at) if has_orders else math.inf,
            "days_since_first_order": _days(now - self.first_order_at) if has_orders else math.inf,
            "days_since_last_visit": _days(now - self.last_seen),
            "days_since_first_seen": _days(now - self.first_seen),
            "page_views": self.page_views,
            "product_views": self.product_views,
            "sessions": self.sessions,
            "cart_adds": self.cart_adds,
            "cart_removes": self.cart_removes,
            "checkouts": self.checkouts,
            "open_cart": 1 if self.open_cart_items > 0 else 0,
            "open_cart_value": round(self.open_cart_value, 2),
        }

    def top_category(self) -> str | None:
        """The category with the most views, adds and items bought (ties: alphabetical)."""
        if not self.categories:
            return None
        return min(self.categories, key=lambda name: (-self.categories[name], name))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of the state (infinities become None)."""
        state = {name: getattr(self, name) for name in self.__dataclass_fields__}
        state["categories"] = dict(self.categories)
        state["recent_event_ids"] = list(self.recent_event_ids)
        return {
            key: None if isinstance(value, float) and math.isinf(value) else value
            for key, value in state.items()
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> UserFeatures:
        """Rebuild a state written by ``to_dict``."""
        features = cls(**{k: v for k, v in state.items() if k in cls.__dataclass_fields__})
        features.recent_event_ids = deque(state.get("recent_event_ids", ()))
        for name, empty in (("first_seen", math.inf), ("last_seen", -math.inf),
                            ("first_order_at", math.inf), ("last_order_at", -math.inf)):
            if getattr(features, name) is None:
                setattr(features, name, empty)
        return features


def _days(seconds: float) -> float:
    return max(0.0, seconds / DAY)
