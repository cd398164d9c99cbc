"""Redis down for 30 s, then back empty: the worker rebuilds memberships and segment profiles
from its state by itself, and what arrived meanwhile is in them (real broker and Redis)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as redis
from support import produce, wait_for
from test_faults import ready, worker_env

from streams.tools.local.embedded import EmbeddedRedis
from streams.tools.local.services import WorkerProcess

pytestmark = pytest.mark.integration

USERS = 60
RULES = {"four", "five", "repeat"}


def orders(first: int, count: int, users: range) -> list[tuple[str, bytes, bytes]]:
    now = time.time() - 300
    return [("shop.orders", f"u{user}".encode(), orjson.dumps({
        "event_id": f"u{user}-o{n}", "ts": now + n, "user_id": f"u{user}",
        "order_id": f"u{user}-o{n}", "total": 25.0})) for n in range(first, first + count)
        for user in users]


async def snapshot(url: str) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, Any]]]:
    """Every user's membership, and every profile (segmentation -> segment -> profile)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        users = {user: await client.hgetall(f"seg:user:{user}")
                 for user in (f"u{n}" for n in range(USERS))}
        profiles = {key.rsplit(":", 1)[1]: {segment: orjson.loads(profile) for segment, profile
                                            in (await client.hgetall(key)).items()}
                    async for key in client.scan_iter(match="seg:segments:*")}
    finally:
        await client.aclose()
    return users, profiles


async def test_redis_down_30_s_then_back_empty_is_rebuilt_exactly(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    server = EmbeddedRedis(log_path=tmp_path / "redis.log").start()
    env = worker_env(kafka_bootstrap, server.url, tmp_path)
    with WorkerProcess(env, tmp_path / "w.log") as worker:
        try:
            await ready(worker)
            await produce(kafka_bootstrap, orders(0, 3, range(USERS)))

            async def has_three_orders() -> bool:
                users, _ = await snapshot(server.url)
                return all(held.get("repeat") == "repeat" for held in users.values())

            await wait_for(has_three_orders, timeout=60, what="three orders of every user")
            before_users, before_profiles = await snapshot(server.url)
            server.stop()
            # Down: a fifth order for a third of the users arrives meanwhile.
            await produce(kafka_bootstrap, orders(3, 2, range(0, USERS, 3)))
            await asyncio.sleep(30)
            server = EmbeddedRedis(port=server.port, log_path=tmp_path / "redis2.log").start()
            # Rule segments on exact order counts are known; the other segmentations (RFM
            # scores move with the population) must simply all be there again.
            expected = {user: {"repeat": "repeat", **({"five": "five"} if int(user[1:]) % 3 == 0
                                                      else {})} for user in before_users}

            async def rebuilt() -> bool:
                users, profiles = await snapshot(server.url)
                return profiles.keys() == before_profiles.keys() and all(
                    {k: v for k, v in users[user].items() if k in RULES} == expected[user]
                    and users[user].keys() - RULES == before_users[user].keys() - RULES
                    for user in before_users)

            await wait_for(rebuilt, timeout=90,
                           what=lambda: f"the rebuild: {worker.log()[-1500:]}")
            assert worker.alive
            _, profiles = await snapshot(server.url)
            for segmentation, segments in before_profiles.items():
                assert profiles[segmentation].keys() == segments.keys(), segmentation
            assert profiles["five"]["five"]["size"] == len(range(0, USERS, 3))
            assert profiles["repeat"]["repeat"]["size"] == USERS
        finally:
            server.stop()
