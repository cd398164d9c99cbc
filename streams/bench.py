"""``segmenter bench``: end-to-end throughput and latency of one worker, printed, not asserted.

1. Throughput: the simulator's events are produced up front; a worker then consumes them all.
   events/s = events handled / time between the first and the last handled event. For scale, a
   bare aiokafka consumer reads the same topics in the same run (the ratio is what to compare:
   the machines are shared and noisy).
2. Latency: while background traffic flows at half the measured throughput, probe clicks from
   fresh visitors are produced; each probe's latency is the time from its production to Redis
   announcing (keyspace notification) that the visitor's membership hash was written.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import orjson
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from segmenter.settings import Settings
from streams.personas import entity_id, plan_events
from streams.services import WorkerProcess, local_services
from streams.topics import ensure_topics


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    with local_services(settings, "segmenter-bench", history_days=90.0) as (settings, env):
        return asyncio.run(_bench(settings, env, args))


async def _bench(settings: Settings, env: dict[str, str], args: argparse.Namespace) -> int:
    await ensure_topics(settings)
    events, _ = plan_events(users=args.users, days=90.0, seed=11, end_ts=time.time())
    events = events[: args.events]
    print(f"segmenter bench: {len(events)} events from {args.users} simulated users, "
          f"{settings.kafka.partitions} partitions, batch {settings.worker.batch_size}")
    await _produce(settings, events)
    raw_rate = await _raw_consume_rate(settings, len(events))
    with tempfile.TemporaryDirectory() as tmp, WorkerProcess(env, Path(tmp) / "w.log") as worker:
        rate, seconds = await asyncio.to_thread(_throughput, worker, len(events))
        print(f"throughput   {len(events)} events in {seconds:.1f} s -> {rate:,.0f} events/s "
              f"end to end (bare aiokafka consumer: {raw_rate:,.0f} events/s, "
              f"ratio {rate / raw_rate:.3f})")
        latencies = await _latency(settings, args.probes, background_rate=rate / 2)
    _print_latency(latencies, args.probes, rate / 2)
    return 0


async def _produce(settings: Settings, events: list[dict]) -> None:
    by_kind = settings.kafka.topics.by_kind
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for event in events:
            futures.append(await producer.send(
                by_kind[event["kind"]], orjson.dumps(event), key=entity_id(event).encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _raw_consume_rate(settings: Settings, count: int) -> float:
    consumer = AIOKafkaConsumer(
        *settings.kafka.topics.inputs, bootstrap_servers=settings.kafka.bootstrap,
        auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
    )
    await consumer.start()
    seen, started = 0, None
    try:
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            started = started or time.perf_counter()
            seen += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    return seen / max(time.perf_counter() - (started or 0), 1e-9)


def _throughput(worker: WorkerProcess, count: int) -> tuple[float, float]:
    """Poll the worker's counters: (events/s, seconds) from first to last handled event."""
    first_count, first_at = 0.0, 0.0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        handled, now = worker.handled(), time.perf_counter()
        if handled and not first_at:
            first_count, first_at = handled, now
        if handled >= count:
            seconds = now - first_at
            return (handled - first_count) / max(seconds, 1e-9), seconds
        time.sleep(0.05)
    raise RuntimeError(f"worker handled only {worker.handled():.0f} of {count} events")


async def _latency(settings: Settings, probes: int, background_rate: float) -> list[float]:
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
    return list(latencies.values())


async def _send_probes(
    settings: Settings, probes: int, background_rate: float, sent_at: dict[str, float]
) -> None:
    """Probes at 20/s, with simulated traffic at ``background_rate`` around them."""
    topics = settings.kafka.topics
    background, _ = plan_events(users=2000, days=30.0, seed=23, end_ts=time.time())
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, linger_ms=1)
    await producer.start()
    per_tick = max(1, round(background_rate / 20))
    try:
        for n in range(probes):
            for event in background[n * per_tick:(n + 1) * per_tick]:
                await producer.send(topics.by_kind[event["kind"]], orjson.dumps(event),
                                    key=entity_id(event).encode())
            probe = f"probe-{n}"
            click = {"event_id": probe, "ts": time.time(), "anonymous_id": probe, "page": "/"}
            sent_at[probe] = time.time()
            await producer.send(topics.clicks, orjson.dumps(click), key=probe.encode())
            await asyncio.sleep(0.05)
        await producer.flush()
    finally:
        await producer.stop()


def _print_latency(latencies: list[float], probes: int, background_rate: float) -> None:
    if len(latencies) < 2:
        print(f"latency      only {len(latencies)} of {probes} probes reached Redis")
        return
    ms = sorted(1000 * value for value in latencies)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    print(f"latency      event produced -> membership in Redis: p50 {cuts[49]:.0f} ms, "
          f"p99 {cuts[98]:.0f} ms, max {ms[-1]:.0f} ms ({len(ms)}/{probes} probes at 20/s, "
          f"background {background_rate:,.0f} events/s)")
