"""Simulated shop traffic from planted personas: pure, deterministic for a seed, no I/O.

Every simulated user gets one persona, and the persona's script decides their visits (sessions:
bursts of clicks seconds to minutes apart), cart activity and orders over the window
``[end_ts - days * 86400, end_ts]``. The events are plain dicts in the JSON input contract form
(docs/events.md) plus ``"kind"`` ("click", "cart" or "order": which topic they go to).

Personas (the planted truth the segments can be checked against):
- ``loyal_high_spender``: orders every 1-3 weeks up to the last days, expensive items.
- ``bargain_hunter``: frequent small orders of cheap products, browses the ``deals`` category.
- ``window_shopper``: many sessions and views, never adds to cart or buys.
- ``cart_abandoner``: browses and adds to cart, often reaches checkout, never orders.
- ``new_visitor``: anonymous only, one or two short sessions in the last days, never buys.
- ``lapsing_customer``: a few orders early on, then nothing at all for the last 62-75 days
  (at most 75% of the window, so only windows of ~83 days or more leave 60+ quiet days).

A visitor first appears with only ``anonymous_id``; with probability ``ANONYMOUS_FIRST_VISIT``
a known customer's first visit is anonymous (before logging in). Clicks and cart events of known
customers carry their ``user_id`` and ``anonymous_id``; orders carry the ``user_id``. Visits come
from a source (UTM on the landing click) on a device; a known customer's profile event (country,
language, birth year, consent) comes at their first logged-in visit.

>>> events, plans = plan_events(users=6, days=90, seed=1, end_ts=1_767_225_600.0)
>>> sorted(plan.persona for plan in plans.values()) == sorted(PERSONAS)
True
>>> events[0]["event_id"], events[0]["kind"]
('1-0', 'click')
>>> anonymous = {plan.anonymous_id for plan in plans.values()}
>>> all(entity_id(event) in plans or entity_id(event) in anonymous for event in events)
True
>>> events == plan_events(users=6, days=90, seed=1, end_ts=1_767_225_600.0)[0]
True
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from features.events import user_key
from streams.tools.traffic.catalogue import (
    CATEGORIES,
    COUNTRIES,
    DEVICES,
    REGULAR_CATEGORIES,
    SALE_CATEGORY,
    SOURCES,
    Product,
    pick,
    weighted,
)

DAY = 86_400.0
CURRENCY = "EUR"
PERSONAS = ("loyal_high_spender", "bargain_hunter", "window_shopper", "cart_abandoner",
            "new_visitor", "lapsing_customer")
#: Default share of each persona among the simulated users.
DEFAULT_MIX: dict[str, float] = {
    "loyal_high_spender": 0.12, "bargain_hunter": 0.15, "window_shopper": 0.20,
    "cart_abandoner": 0.15, "new_visitor": 0.23, "lapsing_customer": 0.15,
}
#: Probability that a known customer's first visit is anonymous (before logging in).
ANONYMOUS_FIRST_VISIT = 0.5
#: Probability that a window shopper is logged in (has a user_id).
WINDOW_SHOPPER_KNOWN = 0.5
#: Lapsing customers stay away for this many days at the end (at most 75% of the window).
LAPSING_QUIET_DAYS = (62.0, 75.0)
#: Relative chance of a visit starting in each UTC hour (quiet nights, busy evenings).
HOURLY_ACTIVITY = (0.15, 0.1, 0.08, 0.08, 0.1, 0.15, 0.3, 0.5, 0.7, 0.8, 0.85, 0.9,
                   0.95, 0.9, 0.85, 0.85, 0.9, 0.95, 1.0, 1.0, 0.95, 0.8, 0.55, 0.3)

@dataclass(frozen=True, slots=True)
class UserPlan:
    """One simulated user: the planted persona and the ids their events carry."""

    index: int
    persona: str
    user_id: str | None
    anonymous_id: str

    @property
    def entity_id(self) -> str:
        """The id the user's state is keyed by (:func:`features.events.user_key`)."""
        return user_key(self.user_id, self.anonymous_id)

    def record(self) -> dict[str, Any]:
        """The persona file's line for this user."""
        return {"entity_id": self.entity_id, "user_id": self.user_id,
                "anonymous_id": self.anonymous_id, "persona": self.persona}


def entity_id(event: Mapping[str, Any]) -> str:
    """Whom an event is about (and its Kafka key): the user_id if present, else anonymous_id.

    >>> entity_id({"user_id": "u1", "anonymous_id": "a1"}), entity_id({"anonymous_id": "a7"})
    ('u1', 'a7')
    """
    return user_key(event.get("user_id"), event.get("anonymous_id"))


class _Visit:
    """One session: events seconds to minutes apart, timed relative to the session's start."""

    def __init__(self, user: _UserEvents, identified: bool) -> None:
        self.user, self.rng, self.ids = user, user.rng, user.ids(identified)
        self.session_id, self.offset = user.next_id("s"), 0.0
        self.source, self.medium, _ = weighted(self.rng, SOURCES)
        self.device = weighted(self.rng, DEVICES)[0]
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.cart: list[tuple[Product, int]] = []

    def _emit(self, kind: str, fields: dict[str, Any], ids: dict[str, str] | None = None) -> None:
        event = {"event_id": "", "kind": kind, "ts": 0.0, **(ids or self.ids), **fields}
        self.events.append((self.offset, event))
        self.offset += min(600.0, 2.0 + self.rng.expovariate(1 / 35.0))

    def click(self, page: str, product: Product | None = None,
              category: str | None = None) -> None:
        fields: dict[str, Any] = {"page": page}
        if product is not None:
            fields |= {"product_id": product.product_id, "category": product.category}
        elif category is not None:
            fields["category"] = category
        fields |= {"session_id": self.session_id, "device": self.device}
        if not self.events and self.source is not None:  # the landing page carries the UTM
            fields |= {"utm_source": self.source, "utm_medium": self.medium}
        self._emit("click", fields)

    def land(self, categories: Sequence[str] = CATEGORIES) -> None:
        """The first page: the home page or a category page."""
        if self.rng.random() < 0.5:
            self.click("/")
        else:
            category = self.rng.choice(categories)
            self.click(f"/c/{category}", category=category)

    def browse(self, products: Sequence[Product]) -> None:
        """Product views, sometimes through the product's category page."""
        for product in products:
            if self.rng.random() < 0.25:
                self.click(f"/c/{product.category}", category=product.category)
            self.click(f"/p/{product.product_id}", product)

    def add(self, product: Product, quantity: int = 1) -> None:
        self.cart.append((product, quantity))
        self._emit("cart", {"action": "add", **product.item(quantity)})

    def remove_one(self) -> None:
        product, quantity = self.cart.pop(self.rng.randrange(len(self.cart)))
        self._emit("cart", {"action": "remove", **product.item(quantity)})

    def checkout(self) -> None:
        """The cart page, the checkout action and the checkout page."""
        self.click("/cart")
        self._emit("cart", {"action": "checkout"})
        self.click("/checkout")

    def order(self) -> None:
        """Order what is in the cart (known customers only)."""
        items = [product.item(quantity) for product, quantity in self.cart]
        total = round(sum(item["price"] * item["quantity"] for item in items), 2)
        self._emit("order", {"order_id": self.user.next_id("o"), "total": total,
                             "currency": CURRENCY, "items": items},
                   ids={"user_id": self.ids["user_id"]})
        self.cart = []


class _UserEvents:
    """One user's visits, scripted by their persona, then placed in the window as events."""

    def __init__(self, plan: UserPlan, rng: random.Random, seed: int, start: float,
                 end: float) -> None:
        self.plan, self.rng, self.seed = plan, rng, seed
        self.start, self.end = start, end
        self.days = (end - start) / DAY
        self.visits: list[tuple[float, _Visit]] = []
        self.counters = {"s": 0, "o": 0, "p": 0}

    def ids(self, identified: bool) -> dict[str, str]:
        if identified and self.plan.user_id is not None:
            return {"user_id": self.plan.user_id, "anonymous_id": self.plan.anonymous_id}
        return {"anonymous_id": self.plan.anonymous_id}

    def next_id(self, prefix: str) -> str:
        self.counters[prefix] += 1
        return f"{prefix}{self.seed}-{self.plan.index:05d}-{self.counters[prefix]:03d}"

    def visit(self, when: float, identified: bool = True) -> _Visit:
        visit = _Visit(self, identified)
        self.visits.append((when, visit))
        return visit

    def when(self, lo_days_ago: float, hi_days_ago: float) -> float:
        """A time between the two ages (clamped to the window), mostly in busy hours."""
        lo = max(self.start, self.end - hi_days_ago * DAY)
        hi = max(lo, min(self.end, self.end - lo_days_ago * DAY))
        t = self.rng.uniform(lo, hi)
        for _ in range(5):
            if self.rng.random() < HOURLY_ACTIVITY[int(t % DAY // 3600)]:
                break
            t = self.rng.uniform(lo, hi)
        return t

    def spread(self, count: int, lo_days_ago: float, hi_days_ago: float) -> list[float]:
        """``count`` times between the two ages."""
        return [self.when(lo_days_ago, hi_days_ago) for _ in range(count)]

    def every(self, step_days: tuple[float, float], first_days_ago: tuple[float, float]
              ) -> list[float]:
        """Times going back from the end: the first ``first_days_ago``, then every step."""
        times, ago = [], self.rng.uniform(*first_days_ago)
        while ago <= self.days - 0.05:
            times.append(self.when(ago - 0.25, ago + 0.25))
            ago += self.rng.uniform(*step_days)
        return times

    def scaled(self, low: int, high: int) -> int:
        """A count in [low, high] for 90 days, scaled to the window's length."""
        return round(self.rng.randint(low, high) * self.days / 90.0)

    def events(self) -> list[dict[str, Any]]:
        """Every visit's events at absolute times in the window, sorted by time."""
        if not self.visits:  # a window too short for the persona's schedule
            self.visit(self.when(0, self.days)).land()
        if self.plan.user_id is not None and self.rng.random() < ANONYMOUS_FIRST_VISIT:
            self._anonymous_first_visit()
        if self.plan.user_id is not None:
            self._profile()
        events = []
        for when, visit in self.visits:
            duration = visit.events[-1][0]
            begin = max(self.start, min(when, self.end - duration))
            for offset, event in visit.events:
                event["ts"] = min(self.end, round(begin + offset, 3))
                events.append(event)
        events.sort(key=itemgetter("ts"))
        return events

    def _profile(self) -> None:
        """The account's traits, given at the first logged-in visit."""
        first = min(when for when, visit in self.visits if "user_id" in visit.ids)
        country, language, _ = weighted(self.rng, COUNTRIES)
        visit = self.visit(first)
        visit._emit("profile", {"country": country, "language": language,
                                "birth_year": self.rng.randint(1950, 2006),
                                "marketing_consent": self.rng.random() < 0.6})

    def _anonymous_first_visit(self) -> None:
        """Browsing before logging in, hours to days before the first known visit."""
        first = min(when for when, _ in self.visits)
        lo, hi = max(self.start, first - 3 * DAY), first - 2 * 3600
        if hi > lo:
            visit = self.visit(self.rng.uniform(lo, hi), identified=False)
            visit.land()
            visit.browse(pick(self.rng, "all", self.rng.randint(1, 3)))


def _purchase(user: _UserEvents, when: float, pool: str, prefer: Sequence[str],
              items: int, browse: int, bias: float = 0.75) -> None:
    """A visit that browses, fills the cart, checks out and orders."""
    rng = user.rng
    visit = user.visit(when)
    visit.land(prefer)
    visit.browse(pick(rng, pool, browse, prefer, bias))
    for product in pick(rng, pool, items, prefer, bias):
        visit.add(product, rng.choice((1, 1, 1, 2)))
    if len(visit.cart) > 1 and rng.random() < 0.2:
        visit.remove_one()
    visit.checkout()
    visit.order()


def _browse(user: _UserEvents, when: float, pool: str, prefer: Sequence[str], views: int,
            bias: float = 0.75, identified: bool = True) -> _Visit:
    visit = user.visit(when, identified)
    visit.land(prefer or CATEGORIES)
    visit.browse(pick(user.rng, pool, views, prefer, bias))
    return visit


def _loyal_high_spender(user: _UserEvents) -> None:
    rng = user.rng
    favourites = rng.sample(("shoes", "apparel", "electronics", "home"), 2)
    for when in user.every(step_days=(7, 21), first_days_ago=(0.2, 8)):
        _purchase(user, when, "premium", favourites, rng.choice((1, 1, 2, 3)), rng.randint(1, 3))
    for when in user.spread(user.scaled(1, 3), 0, user.days):
        _browse(user, when, "premium", favourites, rng.randint(2, 4))


def _bargain_hunter(user: _UserEvents) -> None:
    rng = user.rng
    prefer = (SALE_CATEGORY,)
    for when in user.every(step_days=(6, 13), first_days_ago=(0.2, 6)):
        _purchase(user, when, "cheap", prefer, rng.choice((1, 1, 2, 3)), rng.randint(1, 3), 0.8)
    for when in user.spread(user.scaled(1, 4), 0, user.days):
        _browse(user, when, "cheap", prefer, rng.randint(2, 5), bias=0.9)


def _window_shopper(user: _UserEvents) -> None:
    favourites = user.rng.sample(REGULAR_CATEGORIES, 2)
    for when in user.spread(max(2, user.scaled(5, 10)), 0, user.days):
        _browse(user, when, "all", favourites, user.rng.randint(2, 6))


def _cart_abandoner(user: _UserEvents) -> None:
    rng = user.rng
    favourites = rng.sample(REGULAR_CATEGORIES, 2)
    times = [*sorted(user.spread(max(1, user.scaled(3, 7)), 8, user.days)), user.when(0, 8)]
    for n, when in enumerate(times):
        visit = _browse(user, when, "mid", favourites, rng.randint(1, 4))
        if n == len(times) - 1 or rng.random() < 0.7:
            for product in pick(rng, "mid", rng.randint(1, 3), favourites):
                visit.add(product, rng.choice((1, 1, 2)))
            if len(visit.cart) > 1 and rng.random() < 0.3:
                visit.remove_one()
            if rng.random() < 0.6:
                visit.checkout()
            else:
                visit.click("/cart")


def _new_visitor(user: _UserEvents) -> None:
    for when in user.spread(user.rng.choice((1, 1, 2)), 0, min(5.0, user.days)):
        _browse(user, when, "all", (), user.rng.randint(1, 3), identified=False)


def _lapsing_customer(user: _UserEvents) -> None:
    rng = user.rng
    favourites = rng.sample(REGULAR_CATEGORIES, 2)
    quiet = min(rng.uniform(*LAPSING_QUIET_DAYS), 0.75 * user.days)
    for when in user.spread(rng.randint(2, 5), quiet + 0.1, user.days):
        _purchase(user, when, "mid", favourites, rng.choice((1, 1, 2)), rng.randint(1, 3))
    for when in user.spread(rng.randint(0, 2), quiet + 0.1, user.days):
        _browse(user, when, "mid", favourites, rng.randint(1, 4))


SCRIPTS: dict[str, Callable[[_UserEvents], None]] = {
    "loyal_high_spender": _loyal_high_spender, "bargain_hunter": _bargain_hunter,
    "window_shopper": _window_shopper, "cart_abandoner": _cart_abandoner,
    "new_visitor": _new_visitor, "lapsing_customer": _lapsing_customer,
}


def assign_personas(users: int, seed: int, mix: Mapping[str, float] | None = None) -> list[str]:
    """Each user's persona, in shares as close to ``mix`` as whole users allow, shuffled.

    ``mix`` maps persona names to weights (normalised; personas left out get none). Every
    persona with a weight gets at least one user when there are enough users.

    >>> assign_personas(4, seed=1, mix={"bargain_hunter": 3, "new_visitor": 1})
    ['new_visitor', 'bargain_hunter', 'bargain_hunter', 'bargain_hunter']
    """
    weights = _validate_mix(DEFAULT_MIX if mix is None else mix)
    total = sum(weights.values())
    exact = {name: users * weight / total for name, weight in weights.items()}
    counts = {name: math.floor(share) for name, share in exact.items()}
    by_remainder = sorted(exact, key=lambda name: counts[name] - exact[name])
    for name in by_remainder[: users - sum(counts.values())]:
        counts[name] += 1
    for name in by_remainder:
        if counts[name] == 0 and max(counts.values()) > 1:
            counts[max(counts, key=counts.__getitem__)] -= 1
            counts[name] = 1
    personas = [name for name in PERSONAS for _ in range(counts.get(name, 0))]
    random.Random(seed).shuffle(personas)
    return personas


def _validate_mix(mix: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(mix) - set(PERSONAS))
    if unknown:
        raise ValueError(f"unknown personas {unknown}; known: {list(PERSONAS)}")
    weights = {name: float(weight) for name, weight in mix.items() if weight}
    if any(not math.isfinite(w) or w < 0 for w in weights.values()) or not weights:
        raise ValueError(f"persona weights must be finite, >= 0 and not all 0, got {dict(mix)}")
    return weights


def new_user(index: int, persona: str, rng: random.Random, seed: int, start: float,
             end: float) -> _UserEvents:
    """A user of ``persona`` (known or anonymous, as the persona goes), ready to be scripted."""
    known = persona != "new_visitor" and (
        persona != "window_shopper" or rng.random() < WINDOW_SHOPPER_KNOWN)
    plan = UserPlan(index, persona, f"u{index:05d}" if known else None, f"a{index:05d}")
    return _UserEvents(plan, rng, seed, start, end)


def plan_user(index: int, persona: str, seed: int, start: float,
              end: float) -> tuple[UserPlan, list[dict[str, Any]]]:
    """One user's plan and events (``event_id`` still empty), from their own random stream."""
    user = new_user(index, persona, random.Random(f"{seed}:{index}"), seed, start, end)
    SCRIPTS[persona](user)
    return user.plan, user.events()


def numbered(events: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """``events`` in event-time order, each with a unique ``event_id`` ``f"{prefix}-{n}"``."""
    events.sort(key=itemgetter("ts"))  # stable: ties stay in user, then per-user order
    for n, event in enumerate(events):
        event["event_id"] = f"{prefix}-{n}"
    return events


def plan_events(users: int, days: float, seed: int, end_ts: float,
                mix: Mapping[str, float] | None = None
                ) -> tuple[list[dict[str, Any]], dict[str, UserPlan]]:
    """All events of ``users`` simulated users over ``days`` up to ``end_ts``, and their plans.

    Returns the events sorted by ``ts`` (each with a unique ``event_id`` ``f"{seed}-{n}"``) and
    the plans by entity id. The same arguments always give the same result.
    """
    if users < 0 or not days > 0 or not math.isfinite(days):
        raise ValueError(f"need users >= 0 and days > 0, got users={users}, days={days}")
    start = end_ts - days * DAY
    plans: dict[str, UserPlan] = {}
    events: list[dict[str, Any]] = []
    for index, persona in enumerate(assign_personas(users, seed, mix), 1):
        plan, user_events = plan_user(index, persona, seed, start, end_ts)
        plans[plan.entity_id] = plan
        events.extend(user_events)
    return numbered(events, str(seed)), plans
