"""A user's orders by ``order_id``: placed, cancelled, refunded, so counts and money are net.

An order event carries a ``status``: ``placed`` (the default), ``cancelled`` or ``refunded``
(with ``refund``, the amount refunded, or the whole ``total`` without it). Each order counts
once whatever its events' ids (a shop's exporter that retries sends the same ``order_id`` under a
new ``event_id``), and it counts as one order and its total less its refunds, unless it was
cancelled or refunded in full: then it counts as nothing. Refunds are told apart by their
``event_id`` only, so a refund re-sent under a new event id later than the allowed lateness
counts twice; a cancellation is idempotent. A cancellation or refund that arrives before its
order is kept and applied when the order arrives. Amounts are whole cents.

The ledger stays small however long the history: :meth:`OrderLedger.let_go` drops orders placed
before a cut-off (``features.orders_kept_days`` before the user's latest event), keeping what
they count for in the user's counts and, here, only how many still count and when the first and
last of them were placed (so a later cancellation still finds the first and last order). A
cancellation or refund that names an order the ledger does not hold waits for it as long: then
it is dropped, counted as unmatched (this is also what becomes of a refund of an order already
let go).

>>> ledger = OrderLedger()
>>> ledger.apply("o1", "placed", ts=100.0, total_cents=5000, refund_cents=None)
(1, 5000)
>>> ledger.apply("o1", "placed", ts=100.0, total_cents=5000, refund_cents=None) is None
True
>>> ledger.apply("o1", "refunded", ts=200.0, total_cents=5000, refund_cents=1500)
(0, -1500)
>>> ledger.apply("o1", "cancelled", ts=300.0, total_cents=5000, refund_cents=None)
(-1, -3500)
>>> ledger.placed_times()
[]
>>> ledger.apply("o2", "placed", ts=400.0, total_cents=900, refund_cents=None)
(1, 900)
>>> ledger.let_go(now=600.0, kept_s=100.0)
0
>>> ledger.to_state()
{'kept': {}, 'let_go': [1, 400.0, 400.0]}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

OrderStatus = Literal["placed", "cancelled", "refunded"]

#: Entry fields: when it was placed (None: not yet seen), its total, refunded so far, whether
#: it was cancelled (0/1), and for an order not seen yet, when its first change came.
PLACED_AT, TOTAL, REFUNDED, CANCELLED, WAITING_SINCE = range(5)


@dataclass(slots=True)
class OrderLedger:
    """order_id -> [placed at, total cents, refunded cents, cancelled(, waiting since)]; and
    of the orders let go that still count: [how many, first placed at, last placed at]."""

    orders: dict[str, list[Any]] = field(default_factory=dict)
    let_go_orders: list[Any] | None = None

    def apply(self, order_id: str, status: OrderStatus, ts: float, total_cents: int,
              refund_cents: int | None) -> tuple[int, int] | None:
        """Fold one order event in; return the change of (orders, cents) it makes, or None
        if it changes nothing the ledger can tell apart (a re-sent placement or cancellation)."""
        entry = self.orders.get(order_id)
        if entry is None:  # a change before its order also keeps when it came
            entry = self.orders[order_id] = [None, 0, 0, 0] + ([] if status == "placed" else [ts])
        before = _net(entry)
        if status == "placed":
            if entry[PLACED_AT] is not None:
                return None
            entry[PLACED_AT], entry[TOTAL] = ts, total_cents
            del entry[WAITING_SINCE:]
        elif status == "cancelled":
            if entry[CANCELLED]:
                return None
            entry[CANCELLED] = 1
        else:
            entry[REFUNDED] += total_cents if refund_cents is None else refund_cents
        after = _net(entry)
        return after[0] - before[0], after[1] - before[1]

    def repeats(self, order_id: str, status: OrderStatus) -> bool:
        """Whether the event would change nothing: the order placed, or cancelled, again."""
        entry = self.orders.get(order_id)
        return entry is not None and (
            (status == "placed" and entry[PLACED_AT] is not None)
            or (status == "cancelled" and bool(entry[CANCELLED])))

    def placed_at(self, order_id: str) -> float | None:
        entry = self.orders.get(order_id)
        return None if entry is None else entry[PLACED_AT]

    def placed_times(self) -> list[float]:
        """When each order held here that still counts was placed."""
        return [entry[PLACED_AT] for entry in self.orders.values() if _net(entry)[0]]

    def order_span(self, counted: float) -> tuple[float, float] | None:
        """When the first and the last order that still count were placed, the ones let go
        included; None if the ledger does not know all ``counted`` orders (a record stored
        before it existed)."""
        times = self.placed_times()
        count, first, last = self.let_go_orders or (0, math.inf, -math.inf)
        if len(times) + count != counted:
            return None
        return min([first, *times]), max([last, *times])

    def let_go(self, now: float, kept_s: float) -> int:
        """Drop the orders placed over ``kept_s`` before ``now`` (what still counts of them is
        summed in :attr:`let_go_orders`) and the changes that waited as long for their order;
        return how many such changes were dropped."""
        before, due = now - kept_s, []
        for order_id, entry in self.orders.items():  # one pass, most often finding nothing
            at = entry[PLACED_AT]
            if at is None:
                if len(entry) == WAITING_SINCE:  # stored before changes were timed: from now
                    entry.append(now)
                at = entry[WAITING_SINCE]
            if at < before:
                due.append(order_id)
        unmatched = 0
        for order_id in due:
            entry = self.orders.pop(order_id)
            if entry[PLACED_AT] is None:
                unmatched += 1
            elif _net(entry)[0]:
                self._count_let_go(1, entry[PLACED_AT], entry[PLACED_AT])
        return unmatched

    def _count_let_go(self, count: int, first: float, last: float) -> None:
        held = self.let_go_orders or [0, math.inf, -math.inf]
        self.let_go_orders = [held[0] + count, min(held[1], first), max(held[2], last)]

    def merge(self, other: OrderLedger) -> list[tuple[float, int, int]]:
        """Fold another identity's orders in; return (placed at, orders, cents) corrections
        beyond the two ledgers' sums, for orders both knew (placed by one, cancelled by the
        other)."""
        corrections = []
        if other.let_go_orders is not None:
            self._count_let_go(*other.let_go_orders)
        for order_id, theirs in other.orders.items():
            mine = self.orders.get(order_id)
            if mine is None:
                self.orders[order_id] = list(theirs)
                continue
            before = [a + b for a, b in zip(_net(mine), _net(theirs), strict=True)]
            if mine[PLACED_AT] is None and theirs[PLACED_AT] is not None:
                mine[PLACED_AT], mine[TOTAL] = theirs[PLACED_AT], theirs[TOTAL]
                del mine[WAITING_SINCE:]
            mine[REFUNDED] += theirs[REFUNDED]
            mine[CANCELLED] |= theirs[CANCELLED]
            after = _net(mine)
            if after != tuple(before) and mine[PLACED_AT] is not None:
                corrections.append((mine[PLACED_AT], after[0] - before[0],
                                    after[1] - before[1]))
        return corrections

    def to_state(self) -> dict[str, Any]:
        return {"kept": self.orders, "let_go": self.let_go_orders}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> OrderLedger:
        if not state:
            return cls()
        if not isinstance(state.get("kept"), dict):  # stored before orders were let go
            return cls(state)
        return cls(state["kept"], state["let_go"])  # fresh from the decoder: no copy needed


def _net(entry: list[Any]) -> tuple[int, int]:
    """What an order counts for: (1, total less refunds), or (0, 0) if not placed yet,
    cancelled or refunded in full."""
    if entry[PLACED_AT] is None or entry[CANCELLED] or entry[REFUNDED] >= entry[TOTAL] > 0:
        return 0, 0
    return 1, max(0, entry[TOTAL] - entry[REFUNDED])
