"""A user's open cart, item by item, exact in event time whatever order the events arrive in.

Adds put a product's quantity in the cart (at its latest unit price), removes take it out, and an
order takes out what it bought (the quantity of each of its items; an order that lists no items
empties the whole cart, as nothing else tells what it bought). Cart changes and orders are
applied in event-time order: recent ones are kept in a log and replayed over a **base**, the
cart as the events older than the allowed lateness left it (no event can arrive before those
any more, so folding them in is exact). How long the cart has been left, and whether it has
expired, is the caller's business (:mod:`features.profile`).

>>> cart = OpenCart()
>>> cart.add(100.0, "shoes", 2, 4500)
>>> cart.add(110.0, "socks", 3, 500)
>>> cart.order(200.0, [("shoes", 1)])
>>> cart.items(), cart.value_cents()
(4, 6000)
>>> cart.remove(90.0, "socks", 3)   # arrived late; happened before the socks were added
>>> cart.items()
4
>>> cart.order(300.0, None)
>>> cart.items()
0
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

ADD, REMOVE, ORDER = 0, 1, 2  # also the order of events at the same second: an add is bought

#: A log entry: [ts, kind, product (None: an order), quantity, unit cents | bought items].
Entry = list[Any]


@dataclass(slots=True)
class OpenCart:
    """base: product -> [quantity, unit cents]; log: the changes not folded into it yet."""

    base: dict[str, list[int]] = field(default_factory=dict)
    log: list[Entry] = field(default_factory=list)

    def add(self, ts: float, product: str, quantity: int, unit_cents: int) -> None:
        self._log([ts, ADD, product, quantity, unit_cents])

    def remove(self, ts: float, product: str, quantity: int) -> None:
        self._log([ts, REMOVE, product, quantity, 0])

    def order(self, ts: float, bought: list[tuple[str, int]] | None) -> None:
        """An order placed; ``bought``: (product, quantity) of its items (None: not listed)."""
        self._log([ts, ORDER, None, 0, None if bought is None else
                   [[product, quantity] for product, quantity in bought]])

    def _log(self, entry: Entry) -> None:
        """Keep the log in event-time order (events mostly come in order: an append)."""
        if not self.log or _in_event_time(self.log[-1]) <= _in_event_time(entry):
            self.log.append(entry)
        else:
            bisect.insort(self.log, entry, key=_in_event_time)

    def current(self) -> dict[str, list[int]]:
        """product -> [quantity, unit cents] in the cart now."""
        return _replay(self.base, self.log)

    def items(self) -> int:
        return sum(quantity for quantity, _ in self.current().values())

    def value_cents(self) -> int:
        return sum(quantity * cents for quantity, cents in self.current().values())

    def fold(self, horizon: float) -> None:
        """Fold the changes older than ``horizon`` into the base (none older can come)."""
        if self.log and self.log[0][0] < horizon:
            cut = bisect.bisect_left(self.log, horizon, key=lambda entry: entry[0])
            self.base = _replay(self.base, self.log[:cut])
            del self.log[:cut]

    def merge(self, other: OpenCart) -> None:
        """Another identity's cart (a visitor's, at login) joins this one."""
        for product, (quantity, cents) in other.base.items():
            mine = self.base.setdefault(product, [0, cents])
            mine[0] += quantity
        self.log = sorted([*self.log, *(list(entry) for entry in other.log)],
                          key=_in_event_time)

    def to_state(self) -> dict[str, Any]:
        return {"base": self.base, "log": self.log}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> OpenCart:
        return cls(state["base"], state["log"])  # fresh lists from the decoder


def _replay(base: dict[str, list[int]], log: list[Entry]) -> dict[str, list[int]]:
    cart = {product: list(item) for product, item in base.items()}
    for _ts, kind, product, quantity, detail in log:  # kept in event-time order
        if kind == ADD:
            item = cart.setdefault(product, [0, detail])
            item[0] += quantity
            item[1] = detail
        elif kind == REMOVE:
            _take(cart, product, quantity)
        elif detail is None:
            cart.clear()
        else:
            for bought, count in detail:
                _take(cart, bought, count)
    return cart


def _in_event_time(entry: Entry) -> tuple[float, int, str]:
    """Event time, then adds before removes before orders; then the content, so that events
    of one second replay the same whatever order they arrived in."""
    return entry[0], entry[1], repr(entry[2:])


def _take(cart: dict[str, list[int]], product: str, quantity: int) -> None:
    item = cart.get(product)
    if item is not None:
        item[0] -= quantity
        if item[0] <= 0:
            del cart[product]
