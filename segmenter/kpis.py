"""Each segment's KPIs, counted online as users enter and leave segments and order.

Per segment and UTC day (of event time): ``entries``, ``exits``, ``quick_exits`` (members who
left within :data:`QUICK_EXIT_DAYS` of entering), ``orders`` and ``revenue_cents`` (net orders
placed by members while in the segment) and ``conversions`` (members who ordered within
:data:`CONVERSION_DAYS` of entering, counted once per membership, on the day they entered);
and the shop's own ``orders`` and ``revenue_cents`` (segmentation and segment ``""``). From these
the read side derives conversion rate, revenue, AOV, revenue share and volatility.

>>> kpis = KpiCounter()
>>> kpis.entered("vip", "vip", ts=86_400 * 10)
>>> kpis.ordered({"vip": "vip"}, {"vip": 86_400 * 10}, [], orders=1, cents=5000,
...              ts=86_400 * 12)
['vip']
>>> counts = sorted((c.segment, c.day, c.name, c.amount) for c in kpis.take())
>>> counts  # doctest: +NORMALIZE_WHITESPACE
[('', 12, 'orders', 1), ('', 12, 'revenue_cents', 5000), ('vip', 10, 'conversions', 1),
 ('vip', 10, 'entries', 1), ('vip', 12, 'orders', 1), ('vip', 12, 'revenue_cents', 5000)]
"""

from __future__ import annotations

from dataclasses import dataclass, field

DAY = 86_400.0
QUICK_EXIT_DAYS = 7
CONVERSION_DAYS = 7


@dataclass(frozen=True, slots=True)
class KpiCount:
    """Add ``amount`` to counter ``name`` of a segment's UTC day (segment "": the shop)."""

    segmentation: str
    segment: str
    day: int
    name: str
    amount: int


@dataclass(slots=True)
class KpiCounter:
    """Adds KPI counts up as the engine works (one total per segment, day and counter, so it
    stays small however long nobody takes them); the publisher takes them with each write."""

    pending: dict[tuple[str, str, int, str], int] = field(default_factory=dict)

    def entered(self, segmentation: str, segment: str, ts: float) -> None:
        self._add(KpiCount(segmentation, segment, _day(ts), "entries", 1))

    def left(self, segmentation: str, segment: str, ts: float, since: float | None) -> None:
        self._add(KpiCount(segmentation, segment, _day(ts), "exits", 1))
        if since is not None and ts - since <= QUICK_EXIT_DAYS * DAY:
            self._add(KpiCount(segmentation, segment, _day(ts), "quick_exits", 1))

    def _add(self, count: KpiCount) -> None:
        key = (count.segmentation, count.segment, count.day, count.name)
        self.pending[key] = self.pending.get(key, 0) + count.amount

    def ordered(self, segments: dict[str, str], entered: dict[str, float], converted: list[str],
                orders: int, cents: int, ts: float) -> list[str]:
        """A member's net orders (``orders`` placed less cancelled) and revenue; returns the
        segmentations whose membership converted now (the caller keeps them in the record)."""
        day = _day(ts)
        counts = [KpiCount("", "", day, "orders", orders), KpiCount("", "", day, "revenue_cents",
                                                                     cents)]
        newly = []
        for segmentation, segment in segments.items():
            counts += [KpiCount(segmentation, segment, day, "orders", orders),
                       KpiCount(segmentation, segment, day, "revenue_cents", cents)]
            since = entered.get(segmentation)
            if (orders > 0 and since is not None and segmentation not in converted
                    and ts - since <= CONVERSION_DAYS * DAY):
                counts.append(KpiCount(segmentation, segment, _day(since), "conversions", 1))
                newly.append(segmentation)
        for count in counts:
            if count.amount:
                self._add(count)
        return newly

    def take(self) -> list[KpiCount]:
        taken, self.pending = self.pending, {}
        return [KpiCount(*key, amount) for key, amount in taken.items() if amount]


def _day(ts: float) -> int:
    return int(ts // DAY)
