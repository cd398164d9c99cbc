"""Membership writes survive a Redis outage: they are retried until Redis takes them."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest
import redis.asyncio as redis

from streams.runtime import metrics
from streams.runtime.sinks.redis import RedisMembership
from streams.runtime.sinks.redis_rebuild import SLICE, RedisRebuild
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


async def test_a_rebuild_that_redis_lost_again_midway_starts_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis emptied again while a rebuild ran: the rebuild must not set its sentinel over
    users the new, empty Redis never received (no later check would rebuild them)."""
    users = [f"u{n}" for n in range(2 * SLICE + 500)]
    with EmbeddedRedis() as server:
        sink = RedisMembership(server.url, "seg", CATALOGUE)
        rebuild = RedisRebuild(sink, lambda user_id: 0)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            await rebuild.check([0], lambda: [user.encode() for user in users])
            assert rebuild.rebuilding == {0}
            load = lambda user_id: SimpleNamespace(segments={"lifecycle": "loyal"})  # noqa: E731
            assert await rebuild.step(load) == SLICE
            await client.flushall()  # our own server: lost again, the first slice with it
            with caplog.at_level(logging.INFO):
                for _ in range(10):
                    if not rebuild.rebuilding:
                        break
                    await rebuild.step(load)
            assert not rebuild.rebuilding and "lost its data again" in caplog.text
            assert await client.get(rebuild.sentinel(0)) == "1"
            assert await client.scard("seg:members:lifecycle:loyal") == len(users)
            assert not await client.exists(rebuild.mark)
        finally:
            await client.aclose()
            await sink.close()
