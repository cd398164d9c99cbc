"""Who and where, through a live worker on the real broker and Redis: profile events on their
own topic give country and age-band segments, and rules combine them with behaviour, channels
and interests."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
import redis.asyncio as redis
from support import produce, wait_for, worker_env
from test_faults import ready

from streams.tools.local.services import WorkerProcess

pytestmark = pytest.mark.integration

RULES = """segments:
  german_shoe_fans:
    rule: country == "DE" and interest("shoes") > 0.5 and preferred_channel == "newsletter"
    min_dwell_minutes: 0
  consenting_buyers:
    rule: marketing_consent == 1 and orders >= 1
    min_dwell_minutes: 0
"""


async def test_profiles_channels_and_interests_become_segments(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, redis_url, tmp_path, rules=RULES)
    now = time.time() - 600

    def message(topic: str, user: str, **event: object) -> tuple[str, bytes, bytes]:
        return topic, user.encode(), orjson.dumps({"ts": now, "user_id": user, **event})

    messages = [
        # A profile from a CRM sync stamped weeks ago: traits are never late.
        message("shop.profiles", "anna", event_id="p1", country="de", birth_year=1990,
                marketing_consent=True, ts=now - 40 * 86_400),
        *[message("shop.clicks", "anna", event_id=f"c{n}", page=f"/p/{n}",
                  category="shoes", utm_source="Newsletter", device="mobile")
          for n in range(3)],
        message("shop.orders", "anna", event_id="o1", order_id="o1", total=60.0),
        message("shop.profiles", "ben", event_id="p2", country="FR", age=19),
        message("shop.clicks", "ben", event_id="c9", page="/", category="shoes",
                utm_source="newsletter"),
    ]
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with WorkerProcess(env, tmp_path / "w.log") as worker:
            await ready(worker)
            await produce(kafka_bootstrap, messages)
            year = time.gmtime().tm_year
            anna_band = "35_44" if year - 1990 >= 35 else "25_34"
            expected = {
                "anna": {"country": "DE", "age_band": anna_band,
                         "german_shoe_fans": "german_shoe_fans",
                         "consenting_buyers": "consenting_buyers"},
                "ben": {"country": "FR", "age_band": "18_24"},
            }

            async def settled() -> bool:
                for user, segments in expected.items():
                    held = await store.hgetall(f"seg:user:{user}")
                    if {k: held.get(k) for k in segments} != segments or (
                            user == "ben" and "german_shoe_fans" in held):
                        return False
                return True

            await wait_for(settled, timeout=60, what=lambda: worker.log()[-2000:])
            assert await store.sismember("seg:members:country:DE", "anna")
            assert worker.metric("segmenter_invalid_events_total") == 0
    finally:
        await store.aclose()
