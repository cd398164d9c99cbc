"""Forgetting a user (an erasure request) on the real broker and Redis: ``segmenter forget``
removes the user's membership, segment-set entries and state, publishes their exits, and a
restarted worker does not bring them back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis.asyncio as redis
from support import batch_segments, consume_all, produce, wait_for
from test_faults import ready, worker_env

from streams.tools.local.services import WorkerProcess

pytestmark = pytest.mark.integration


def orders(user: str, count: int) -> list[tuple[str, bytes, bytes]]:
    now = time.time() - 300
    return [("shop.orders", user.encode(), orjson.dumps({
        "event_id": f"{user}-o{n}", "ts": now + n, "user_id": user, "order_id": f"{user}-o{n}",
        "total": 40.0})) for n in range(count)]


async def test_forget_removes_a_user_everywhere_and_publishes_their_exits(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, redis_url, tmp_path)
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with WorkerProcess(env, tmp_path / "w.log") as worker:
            await ready(worker)
            messages = orders("gdpr", 4) + orders("keep", 4)
            await produce(kafka_bootstrap, messages)

            # Settled: where a batch recomputation puts them (RFM's quantiles refreshed too),
            # so the memberships read here are the ones the exits leave.
            expected = batch_segments([(topic, orjson.loads(value))
                                       for topic, _, value in messages], env)

            async def settled() -> bool:
                return all([await store.hgetall(f"seg:user:{u}") == expected[u]
                            for u in ("gdpr", "keep")])

            await wait_for(settled, timeout=60, what="both users where a recomputation puts them")
            held = await store.hgetall("seg:user:gdpr")
            assert held["four"] == "four"
            done = subprocess.run(
                [sys.executable, "-m", "streams.cli", "forget", "gdpr", "--timeout", "30"],
                env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "gdpr: forgotten" in done.stdout
            assert await store.exists("seg:user:gdpr") == 0
            for segmentation, segment in held.items():
                assert not await store.sismember(f"seg:members:{segmentation}:{segment}", "gdpr")
            assert await store.hget("seg:user:keep", "four") == "four"
            profile = orjson.loads(await store.hget("seg:segments:four", "four"))
            assert profile["size"] == 1
            changes = [orjson.loads(m.value) for m in await consume_all(
                kafka_bootstrap, "segments.changes", timeout=30,
                until=lambda got: sum(b'"forget:' in m.value for m in got) >= len(held))]
            exits = {c["segmentation"]: c for c in changes if c["cause"].startswith("forget:")}
            assert {s: c["previous"] for s, c in exits.items()} == held
            assert all(c["current"] is None and c["user_id"] == "gdpr" for c in exits.values())
        # A restart recovers the state from the changelog: the user stays forgotten.
        with WorkerProcess(env, tmp_path / "w2.log") as worker:
            await ready(worker)
            assert "recovered 1 users" in worker.log()
            assert await store.exists("seg:user:gdpr") == 0
    finally:
        await store.aclose()
