"""Segment KPIs: counted by the engine, added up in a real redis-server by the sink, read back
by ``segmenter segments``; figures worked out by hand from a small shop's story."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from features.events import OrderEvent
from segmenter.engine import SegmentEngine, UserRecord
from segmenter.settings import load_settings
from streams.runtime.sinks.redis import RedisMembership
from streams.tools.admin.segment_kpis import segment_kpis

pytestmark = pytest.mark.integration

DAY = 86_400.0
TODAY = 20_400  # days since 1970: 2025-11-08


def order(user: str, n: int, day: int, total: float, **extra: Any) -> OrderEvent:
    return OrderEvent(event_id=f"{user}-{n}", ts=(TODAY - day) * DAY + 3600, user_id=user,
                      order_id=f"{user}-o{extra.pop('order', n)}", total=total, **extra)


async def test_kpis_of_a_small_shop(redis_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("segments:\n  big:\n    rule: monetary >= 100\n    min_dwell_minutes: 0\n")
    engine = SegmentEngine(load_settings(environ={"SEGMENTER_RULES_FILE": str(rules)}))
    story = [
        ("ann", [order("ann", 1, 20, 150.0)]),       # enters big 20 days ago
        ("ann", [order("ann", 2, 18, 60.0)]),        # a member's order 2 days after: converts
        ("bob", [order("bob", 1, 15, 120.0)]),       # enters big 15 days ago
        ("bob", [order("bob", 2, 12, 120.0, order=1, status="refunded", refund=50.0)]),
        # 70 left: out of big after 3 days (a quick exit); the refund is a member's -50
        ("cid", [order("cid", 1, 3, 500.0)]),        # enters big 3 days ago, no order since
    ]
    records: dict[str, UserRecord] = {}
    sink = RedisMembership(redis_url, "seg", engine.catalogue())
    for user, events in story:
        record = records.setdefault(user, engine.new_record())
        changes = engine.learn(user, record, events, events[-1].ts)
        touched = {(c.segmentation, s) for c in changes for s in (c.previous, c.current) if s}
        await sink.write({user: record.segments}, touched, engine.kpis.take())
    await sink.close()

    client = redis.Redis.from_url(redis_url)
    try:
        kpis = await segment_kpis(client, "seg", today=TODAY)
    finally:
        await client.aclose()
    big = kpis["big"]["big"]
    assert (big["size"], big["entries_7d"], big["exits_7d"]) == (2, 1, 0)
    # Entered 7 to 37 days ago: ann and bob; ann ordered within 7 days of entering.
    assert big["conversion"] == 0.5
    # Members' net orders while in big: ann's 60, bob's refund of 50.
    assert (big["revenue_30d"], big["orders_30d"], big["aov_30d"]) == (10.0, 1, 10.0)
    shop_revenue = 150 + 60 + 120 - 50 + 500
    assert big["revenue_share_30d"] == pytest.approx(10 / shop_revenue)
    assert big["volatility_30d"] == pytest.approx(1 / 3)  # bob left within 7 days, of 3 entries
    lifecycle = kpis["lifecycle"]
    assert lifecycle["new_customer"]["size"] == 2 and lifecycle["repeat"]["size"] == 1
