"""Latency for ``segmenter bench``: from an event's production to its user's membership in Redis.

Probe clicks from fresh visitors are produced at 20/s while simulated background traffic flows
at a given rate; each probe's latency ends when Redis announces (keyspace notification) that
the visitor's membership hash was written.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import orjson
import redis.asyncio as redis
from aiokafka import AIOKafkaProducer

from segmenter.settings import Settings
from streams.tools.traffic.personas import entity_id, plan_events

PROBES_PER_S = 20


async def measure_latency(settings: Settings, probes: int, background_rate: float) -> str:
    """A line of figures: p50, p99 and max over the probes that reached Redis."""
    client = redis.Redis.from_url(settings.redis.url)
    await client.config_set("notify-keyspace-events", "Kh")
    pubsub = client.pubsub()
    prefix = f"{settings.redis.key_prefix}:user:probe-"
    await pubsub.psubscribe(f"__keyspace@*__:{prefix}*")
    sent_at: dict[str, float] = {}
    latencies: dict[str, float] = {}

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] != "pmessage":
                continue
            probe = message["channel"].decode().rsplit(":", 1)[1]
            if probe in sent_at and probe not in latencies:
                latencies[probe] = time.time() - sent_at[probe]

    listener = asyncio.create_task(listen())
    try:
        await _send_probes(settings, probes, background_rate, sent_at)
        deadline = time.monotonic() + 30
        while len(latencies) < probes and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        listener.cancel()
        await pubsub.aclose()
        await client.aclose()
    return _describe(list(latencies.values()), probes, background_rate)


async def _send_probes(
    settings: Settings, probes: int, background_rate: float, sent_at: dict[str, float]
) -> None:
    topics = settings.kafka.topics
    background, _ = plan_events(users=2000, days=1.0, seed=23, end_ts=time.time())
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, linger_ms=1)
    await producer.start()
    per_tick = max(1, round(background_rate / PROBES_PER_S))
    try:
        for n in range(probes):
            for event in background[n * per_tick:(n + 1) * per_tick]:
                await producer.send(topics.by_kind[event["kind"]], orjson.dumps(event),
                                    key=entity_id(event).encode())
            probe = f"probe-{n}"
            click = {"event_id": probe, "ts": time.time(), "anonymous_id": probe, "page": "/"}
            sent_at[probe] = time.time()
            await producer.send(topics.clicks, orjson.dumps(click), key=probe.encode())
            await asyncio.sleep(1 / PROBES_PER_S)
        await producer.flush()
    finally:
        await producer.stop()


def _describe(latencies: list[float], probes: int, background_rate: float) -> str:
    if len(latencies) < 2:
        return f"only {len(latencies)} of {probes} probes reached Redis"
    ms = sorted(1000 * value for value in latencies)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return (f"produce -> Redis p50 {cuts[49]:.0f} ms, p99 {cuts[98]:.0f} ms, max {ms[-1]:.0f} "
            f"ms ({len(ms)}/{probes} probes at {PROBES_PER_S}/s, background "
            f"{background_rate:,.0f} events/s)")
