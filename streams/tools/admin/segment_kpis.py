"""Reading the segments' KPIs from Redis (written by the workers, see
:mod:`segmenter.kpis` and :mod:`streams.runtime.sinks.redis`): what marketers judge a segment by.

For each segment, as of UTC day ``today``:

- ``entries_7d``, ``exits_7d``: users who entered and left it in the last 7 days;
- ``conversion``: of the users who entered it 7 to 37 days ago (their 7 days are over), the
  share who ordered within 7 days of entering (None: nobody entered then);
- ``revenue_30d``, ``orders_30d``, ``aov_30d``: members' net orders in the last 30 days, and
  ``revenue_share_30d``: their share of the shop's revenue then;
- ``volatility_30d``: of the last 30 days' entries, the share of exits within 7 days of entering;
- ``size``, ``size_1d_ago``, ``size_7d_ago``: now, and from the segments' size history
  (:mod:`streams.runtime.segment_history`).
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as redis

from streams.runtime.segment_history import Sample, as_text, read_history
from streams.tools.admin.reader import MembershipReader

Catalogue = dict[str, dict[str, dict[str, Any]]]


async def segment_catalogue(reader: MembershipReader, prefix: str,
                            histories: dict[str, list[Sample]] | None = None) -> Catalogue:
    """Segmentation -> segment -> profile with its KPIs: what ``segmenter segments`` prints
    and the explorer shows. ``histories``: see :func:`segment_kpis`."""
    profiles = await reader.segments()
    kpis = await segment_kpis(reader.client, prefix, histories=histories)
    for segmentation, segments in kpis.items():
        for segment, figures in segments.items():
            profiles.setdefault(segmentation, {}).setdefault(segment, {}).update(figures)
    return profiles


async def segment_kpis(client: redis.Redis, prefix: str, today: int | None = None,
                       histories: dict[str, list[Sample]] | None = None) -> Catalogue:
    """Segmentation -> segment -> KPIs (see the module's doc). ``histories``: segmentation ->
    its size history, read where missing and added (a caller that plots them reads them once)."""
    today = int(time.time() // 86_400) if today is None else today
    shop = _counts(await client.hgetall(f"{prefix}:kpi:shop"))
    shop_revenue = _sum(shop, "revenue_cents", today - 29, today)
    result: Catalogue = {}
    histories = {} if histories is None else histories
    now = time.time()
    async for key in client.scan_iter(match=f"{prefix}:members:*", count=500):
        name = as_text(key).removeprefix(f"{prefix}:members:")
        segmentation, _, segment = name.partition(":")
        if segmentation not in histories:
            histories[segmentation] = await read_history(client, prefix, segmentation)
        counts = _counts(await client.hgetall(f"{prefix}:kpi:{name}"))
        kpis = _summary(counts, today, shop_revenue)
        kpis["size"] = await client.scard(key)
        for label, days in (("size_1d_ago", 1), ("size_7d_ago", 7)):
            kpis[label] = size_at(histories[segmentation], segment, now - days * 86_400)
        result.setdefault(segmentation, {})[segment] = kpis
    return {name: dict(sorted(segments.items())) for name, segments in sorted(result.items())}


def size_at(samples: list[Sample], segment: str, at: float,
            within_s: float = 2 * 3600.0) -> int | None:
    """A segment's members in the last sample at or before ``at`` (None: no sample within
    ``within_s`` before it).

    >>> history = [Sample(100.0, {"vip": (3, 5, 2)}), Sample(200.0, {"vip": (4, 6, 2)})]
    >>> size_at(history, "vip", 150.0), size_at(history, "vip", 50.0), size_at(history, "x", 250.0)
    (3, None, 0)
    """
    before = [sample for sample in samples if at - within_s <= sample.t <= at]
    return before[-1].segments.get(segment, (0, 0, 0))[0] if before else None


def _summary(counts: dict[tuple[int, str], int], today: int,
             shop_revenue: int) -> dict[str, Any]:
    cohort = (today - 37, today - 7)
    entered = _sum(counts, "entries", *cohort)
    revenue = _sum(counts, "revenue_cents", today - 29, today)
    orders = _sum(counts, "orders", today - 29, today)
    entries_30d = _sum(counts, "entries", today - 29, today)
    return {
        "entries_7d": _sum(counts, "entries", today - 6, today),
        "exits_7d": _sum(counts, "exits", today - 6, today),
        "conversion": _sum(counts, "conversions", *cohort) / entered if entered else None,
        "revenue_30d": revenue / 100,
        "orders_30d": orders,
        "aov_30d": round(revenue / 100 / orders, 2) if orders > 0 else None,
        "revenue_share_30d": revenue / shop_revenue if shop_revenue > 0 else None,
        "volatility_30d": (_sum(counts, "quick_exits", today - 29, today) / entries_30d
                           if entries_30d else None),
    }


def _counts(raw: dict[Any, Any]) -> dict[tuple[int, str], int]:
    counts = {}
    for field, value in raw.items():
        day, _, name = as_text(field).partition(":")
        counts[int(day), name] = int(value)
    return counts


def _sum(counts: dict[tuple[int, str], int], name: str, first: int, last: int) -> int:
    return sum(value for (day, counter), value in counts.items()
               if counter == name and first <= day <= last)
