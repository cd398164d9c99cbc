"""Membership writes survive a Redis outage: they are retried until Redis takes them."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as redis

from streams.runtime import metrics
from streams.runtime.sinks.redis import RedisMembership
from streams.tools.local.embedded import EmbeddedRedis, free_port

pytestmark = pytest.mark.integration

CATALOGUE = {"lifecycle": {"visitor": "Seen, never ordered", "loyal": "Orders often"}}


async def test_a_write_waits_for_redis_to_come_back() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    sink = RedisMembership(url, "seg", CATALOGUE)
    errors_before = metrics.REDIS_ERRORS._value.get()
    write = asyncio.create_task(
        sink.write({"u1": {"lifecycle": "loyal"}}, [("lifecycle", "loyal")]))
    await asyncio.sleep(1.0)
    assert not write.done()  # held, not dropped, while Redis is down
    assert metrics.REDIS_ERRORS._value.get() > errors_before
    with EmbeddedRedis(port=port):
        sizes = await asyncio.wait_for(write, timeout=30)
        assert sizes == {("lifecycle", "loyal"): 1}
        client = redis.Redis.from_url(url, decode_responses=True)
        assert await client.hgetall("seg:user:u1") == {"lifecycle": "loyal"}
        assert await client.smembers("seg:members:lifecycle:loyal") == {"u1"}
        await client.aclose()
        await sink.close()
