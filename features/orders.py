"""A user's orders by ``order_id``: placed, cancelled, refunded, so counts and money are net.

An order event carries a ``status``: ``placed`` (the default), ``cancelled`` or ``refunded``
(with ``refund``, the amount refunded, or the whole ``total`` without it). Each order counts
once whatever its events' ids (a shop's exporter that retries sends the same ``order_id`` under a
new ``event_id``), and it counts as one order and its total less its refunds, unless it was
cancelled or refunded in full: then it counts as nothing. Refunds are told apart by their
``event_id`` only, so a refund re-sent under a new event id later than the allowed lateness
counts twice; a cancellation is idempotent. A cancellation or refund that arrives before its
order is kept and applied when the order arrives. Amounts are whole cents.

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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

OrderStatus = Literal["placed", "cancelled", "refunded"]

#: Entry fields: when it was placed (None: not yet seen), its total, refunded so far, and
#: whether it was cancelled (0/1).
PLACED_AT, TOTAL, REFUNDED, CANCELLED = range(4)


@dataclass(slots=True)
class OrderLedger:
    """order_id -> [placed at, total cents, refunded cents, cancelled]."""

    orders: dict[str, list[Any]] = field(default_factory=dict)

    def apply(self, order_id: str, status: OrderStatus, ts: float, total_cents: int,
              refund_cents: int | None) -> tuple[int, int] | None:
        """Fold one order event in; return the change of (orders, cents) it makes, or None
        if it changes nothing the ledger can tell apart (a re-sent placement or cancellation)."""
        entry = self.orders.get(order_id)
        if entry is None:
            entry = self.orders[order_id] = [None, 0, 0, 0]
        before = _net(entry)
        if status == "placed":
            if entry[PLACED_AT] is not None:
                return None
            entry[PLACED_AT], entry[TOTAL] = ts, total_cents
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
        """When each order that still counts was placed."""
        return [entry[PLACED_AT] for entry in self.orders.values() if _net(entry)[0]]

    def merge(self, other: OrderLedger) -> list[tuple[float, int, int]]:
        """Fold another identity's orders in; return (placed at, orders, cents) corrections
        beyond the two ledgers' sums, for orders both knew (placed by one, cancelled by the
        other)."""
        corrections = []
        for order_id, theirs in other.orders.items():
            mine = self.orders.get(order_id)
            if mine is None:
                self.orders[order_id] = list(theirs)
                continue
            before = [a + b for a, b in zip(_net(mine), _net(theirs), strict=True)]
            if mine[PLACED_AT] is None:
                mine[PLACED_AT], mine[TOTAL] = theirs[PLACED_AT], theirs[TOTAL]
            mine[REFUNDED] += theirs[REFUNDED]
            mine[CANCELLED] |= theirs[CANCELLED]
            after = _net(mine)
            if after != tuple(before) and mine[PLACED_AT] is not None:
                corrections.append((mine[PLACED_AT], after[0] - before[0],
                                    after[1] - before[1]))
        return corrections

    def to_state(self) -> dict[str, list[Any]]:
        return self.orders

    @classmethod
    def from_state(cls, state: dict[str, list[Any]] | None) -> OrderLedger:
        return cls(state or {})  # fresh lists from the decoder: no copy needed


def _net(entry: list[Any]) -> tuple[int, int]:
    """What an order counts for: (1, total less refunds), or (0, 0) if not placed yet,
    cancelled or refunded in full."""
    if entry[PLACED_AT] is None or entry[CANCELLED] or entry[REFUNDED] >= entry[TOTAL] > 0:
        return 0, 0
    return 1, max(0, entry[TOTAL] - entry[REFUNDED])
