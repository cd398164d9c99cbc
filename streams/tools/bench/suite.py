"""``segmenter bench``: one run, one table of figures (printed, not asserted).

Each part runs on fresh services (an embedded Tansu broker and a private redis-server unless
SEGMENTER_KAFKA_BOOTSTRAP / SEGMENTER_REDIS_URL are set) with the worker as a real process:

The live parts (1, 2, 4) evaluate and publish every event (``worker.backfill_changes: each``):
their simulated traffic is weeks old, and coalescing it would measure a backfill.

1. **single**: simulated traffic, one event per Kafka message, produced up front. Over the same
   messages: a bare aiokafka consumer, a Faust agent that only counts
   (:mod:`streams.tools.bench.faust_noop`), and the worker (events/s from its first to its last
   handled event). Then latency: probe clicks at 20/s over background traffic at half the worker's
   rate, timed from production to Redis announcing the membership (keyspace notification). The
   worker's largest loop lag, RSS and the Redis bytes per user are read at the end.
2. **batched**: the same events as batched envelopes (one message carries up to 20 events of
   one user and kind, as browser trackers send them).
3. **backfill**: a shop's order history (most customers buy once), produced first with event-
   time stamps as ``segmenter replay`` does, then one worker catches up: orders/s end to end,
   and how the change events it published are flagged (``backfill``).
4. **two workers**: part 1's messages read by two workers in one group.
5. **state**: worker state per user (stored records) and the cost per event, in process, at
   growing numbers of users (:mod:`streams.tools.bench.state`).
6. **soak**: one worker under live traffic at 70% of part 1's rate for 10 minutes (20 s in
   ``--quick``): RSS growth once warm, dead letters of valid traffic
   (:mod:`streams.tools.bench.soak`).

Each throughput part (1-4) also prints the workers' CPU per event and how busy the whole
machine was meanwhile (:mod:`streams.tools.bench.cpu`): two workers on a machine whose cores
one worker, the broker and Redis already fill cannot double the rate, and those figures say so.

The machines are shared and noisy: compare the ratios taken within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from segmenter.settings import Settings
from streams.runtime.codec import event_time_ms
from streams.runtime.topics import ensure_topics
from streams.tools.bench.cpu import CpuMeter, CpuUsed
from streams.tools.bench.latency import measure_latency
from streams.tools.bench.soak import soak
from streams.tools.bench.state import order_history, state_rows
from streams.tools.local.embedded import free_port
from streams.tools.local.services import WorkerProcess, local_services
from streams.tools.traffic.personas import entity_id, plan_events
from streams.tools.traffic.replay import replay_events

FULL = {"events": 200_000, "users": 10_000, "orders": 70_000, "customers": 23_500,
        "probes": 300, "state_users": (10_000, 100_000, 1_000_000), "soak_s": 600.0,
        "warmup_s": 60.0, "soak_users": 20_000}
QUICK = {"events": 20_000, "users": 1_000, "orders": 5_000, "customers": 2_000,
         "probes": 40, "state_users": (1_000, 10_000), "soak_s": 20.0, "warmup_s": 5.0,
         "soak_users": 500}
ENVELOPE_EVENTS = 20
#: The soak's allowed lateness. A user's state keeps the ids of their events within it (to drop
#: duplicates), so it grows for as long as the lateness: with the configured day, a soak of
#: minutes would measure that window filling up, not whether memory stays flat once it is full.
SOAK_LATENESS_S = 120.0


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    size = dict(QUICK if args.quick else FULL)
    for name in ("events", "users", "probes"):
        if getattr(args, name, None):
            size[name] = getattr(args, name)
    rows: list[tuple[str, str]] = []
    print(f"segmenter bench ({'quick' if args.quick else 'full'}): {size['events']:,} events "
          f"of {size['users']:,} simulated users, {settings.kafka.partitions} partitions",
          flush=True)
    events, _ = plan_events(users=size["users"], days=90.0, seed=11, end_ts=time.time() - 60)
    events = events[: size["events"]]
    measured: dict[str, float] = {}
    rows += _part(settings, "single", lambda s, env: _single(s, env, events, size["probes"],
                                                             measured))
    rows += _part(settings, "batched", lambda s, env: _batched(s, env, events))
    rows += _part(settings, "backfill", lambda s, env: _backfill(
        s, env, size["orders"], size["customers"]), live=False)
    rows += _part(settings, "two", lambda s, env: _two_workers(s, env, events, measured))
    rows += state_rows(size["state_users"], args.config)
    rows += _part(settings, "soak", lambda s, env: _soak(s, env, 0.7 * measured["single"],
                                                         size["soak_s"], size["warmup_s"],
                                                         size["soak_users"]),
                  history_days=SOAK_LATENESS_S / 86400)
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def _part(settings: Settings, name: str, run: Any, live: bool = True,
          history_days: float = 90.0) -> list[tuple[str, str]]:
    """Live parts evaluate and publish every event (``backfill_changes: each``): their
    simulated traffic is weeks old, and coalescing it would measure a backfill instead; the
    allowed lateness covers its ``history_days``. The backfill runs with the configured
    settings, as a user replaying their orders would."""
    print(f"... {name}", flush=True)
    with local_services(settings, f"bench-{name}", history_days if live else None,
                        "each" if live else None) as (s, env):
        asyncio.run(ensure_topics(s))
        return asyncio.run(run(s, env))


async def _single(settings: Settings, env: dict[str, str], events: list[dict],
                  probes: int, measured: dict[str, float]) -> list[tuple[str, str]]:
    await _produce(settings, [(_topic(settings, e), _key(e), orjson.dumps(e), e)
                              for e in events])
    raw = await _bare_consumer_rate(settings, len(events))
    noop = await asyncio.to_thread(_faust_noop_rate, env, len(events))
    with tempfile.TemporaryDirectory() as tmp, WorkerProcess(env, Path(tmp) / "w.log") as w:
        rate, _, cpu = await asyncio.to_thread(_throughput, [w], len(events))
        measured["single"] = rate
        latencies = await measure_latency(settings, probes, background_rate=rate / 2)
        users = len({entity_id(e) for e in events})
        redis_bytes = await _redis_bytes(settings)
        loop_lag, rss = w.metric("segmenter_loop_lag_max_seconds"), w.metric(
            "process_resident_memory_bytes")
    return [
        ("single-event messages", f"{rate:,.0f} events/s per worker; bare aiokafka consumer "
         f"{raw:,.0f}/s (ratio {rate / raw:.3f}); Faust no-op agent {noop:,.0f}/s "
         f"(ratio {rate / noop:.2f}){_cpu(cpu, len(events))}"),
        ("latency", latencies),
        ("max loop lag", f"{1000 * loop_lag:.0f} ms (worker, whole run incl. latency part)"),
        ("worker RSS", f"{rss / 1e6:.0f} MB for {users:,} users (process total)"),
        ("Redis per user", f"{redis_bytes / users:,.0f} B ({redis_bytes / 1e6:.1f} MB used "
         f"for {users:,} users, their memberships and segment sets)"),
    ]


async def _batched(settings: Settings, env: dict[str, str], events: list[dict],
                   ) -> list[tuple[str, str]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    messages = []
    for event in events:
        group = groups.setdefault((entity_id(event), event["kind"]), [])
        group.append(event)
        if len(group) == ENVELOPE_EVENTS:
            messages.append(_envelope(settings, group))
            group.clear()
    messages += [_envelope(settings, group) for group in groups.values() if group]
    await _produce(settings, messages)
    with tempfile.TemporaryDirectory() as tmp, WorkerProcess(env, Path(tmp) / "w.log") as w:
        rate, _, cpu = await asyncio.to_thread(_throughput, [w], len(events))
    return [("batched envelopes", f"{rate:,.0f} events/s per worker ({len(messages):,} "
             f"messages of up to {ENVELOPE_EVENTS} events){_cpu(cpu, len(events))}")]


async def _backfill(settings: Settings, env: dict[str, str], orders: int, customers: int,
                    ) -> list[tuple[str, str]]:
    history = order_history(orders, customers, days=540, end_ts=time.time() - 3600)
    started = time.perf_counter()
    await replay_events(settings.kafka.bootstrap, settings.kafka.topics.orders, history, 0.0)
    produced_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp, WorkerProcess(env, Path(tmp) / "w.log") as w:
        rate, seconds, cpu = await asyncio.to_thread(_throughput, [w], len(history))
        dead = w.metric("segmenter_invalid_events_total")
        rss, loop_lag = w.metric("process_resident_memory_bytes"), w.metric(
            "segmenter_loop_lag_max_seconds")
    redis_bytes = await _redis_bytes(settings)
    flags = await _change_flags(settings)
    return [("backfill", f"{rate:,.0f} orders/s end to end ({len(history):,} orders of "
             f"{customers:,} customers over 540 days in {seconds:.1f} s; produced at "
             f"{len(history) / produced_s:,.0f}/s); {dead:.0f} dead letters; change events "
             f"{flags.get(True, 0):,} flagged backfill, {flags.get(False, 0):,} not"
             f"{_cpu(cpu, len(history))}"),
            ("backfill memory", f"worker RSS {rss / 1e6:.0f} MB for {customers:,} customers "
             f"({rss / customers / 1e3:.1f} KB each, process total); Redis "
             f"{redis_bytes / customers:,.0f} B per customer; max loop lag "
             f"{1000 * loop_lag:.0f} ms")]


async def _two_workers(settings: Settings, env: dict[str, str], events: list[dict],
                       measured: dict[str, float]) -> list[tuple[str, str]]:
    await _produce(settings, [(_topic(settings, e), _key(e), orjson.dumps(e), e)
                              for e in events])
    with tempfile.TemporaryDirectory() as tmp:
        workers = [WorkerProcess({**env, "SEGMENTER_METRICS_PORT": str(port)},
                                 Path(tmp) / f"w{n}.log").start()
                   for n, port in enumerate((free_port(), free_port()))]
        try:
            two, _, cpu = await asyncio.to_thread(_throughput, workers, len(events))
        finally:
            for worker in workers:
                worker.stop()
    one = measured.get("single")
    ratio = f" ({two / one:.2f}x one worker)" if one else ""
    return [("two workers", f"{two:,.0f} events/s together{ratio}{_cpu(cpu, len(events))}")]


async def _soak(settings: Settings, env: dict[str, str], rate: float, seconds: float,
                warmup_s: float, users: int) -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp, WorkerProcess(env, Path(tmp) / "w.log") as w:
        while not w.metric("process_resident_memory_bytes"):  # its endpoint is up
            await asyncio.sleep(0.2)
        return [("soak", await soak(settings, w, rate, seconds, warmup_s, users,
                                    lateness_s=SOAK_LATENESS_S))]


def _envelope(settings: Settings, group: list[dict]) -> tuple[str, bytes, bytes, dict]:
    return (_topic(settings, group[0]), _key(group[0]), orjson.dumps(group), group[0])


def _topic(settings: Settings, event: dict) -> str:
    return settings.kafka.topics.by_kind[event["kind"]]


def _key(event: dict) -> bytes:
    return entity_id(event).encode()


async def _produce(settings: Settings, messages: list[tuple[str, bytes, bytes, dict]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, linger_ms=5,
                                max_batch_size=512 * 1024, max_request_size=4 * 2**20)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key, timestamp_ms=event_time_ms(first))
                   for topic, key, value, first in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _bare_consumer_rate(settings: Settings, count: int) -> float:
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


def _faust_noop_rate(env: dict[str, str], count: int) -> float:
    done = subprocess.run([sys.executable, "-m", "streams.tools.bench.faust_noop", str(count)],
                          env={**os.environ, **env, "SEGMENTER_METRICS_PORT": "0"},
                          capture_output=True, timeout=600)
    found = re.search(rb"\{[^{}]*\}", done.stdout)  # Faust writes terminal codes around it
    if found is None:
        raise RuntimeError(f"the Faust no-op agent printed no result: {done.stderr[-2000:]!r}")
    result = json.loads(found.group())
    return result["events"] / result["seconds"]


def _throughput(workers: list[WorkerProcess], count: int,
                ) -> tuple[float, float, CpuUsed | None]:
    """Poll the workers' counters: (events/s, seconds) from the first input taken to the
    last event handled (written out, and every user a backfill folded in evaluated), and the
    CPU used over that window (:mod:`streams.tools.bench.cpu`)."""
    first_at, meter = 0.0, None
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        dead = [w for w in workers if not w.alive]
        if dead:
            log = dead[0].log()
            first = log.find("Traceback")  # the cause, not the shutdown that followed it
            cause = log[first:first + 4000] if first >= 0 else log[-3000:]
            raise RuntimeError(f"a worker exited:\n{cause}")
        now = time.perf_counter()
        progress = [w.progress_settled() for w in workers]
        if not first_at and any(taken for taken, _, _ in progress):
            first_at = now
            meter = CpuMeter([w.process.pid for w in workers if w.process is not None])
        handled = sum(handled for _, handled, _ in progress)
        if first_at and handled >= count and not any(waiting for _, _, waiting in progress):
            seconds = now - first_at
            return handled / max(seconds, 1e-9), seconds, meter.read() if meter else None
        time.sleep(0.2)  # each scrape costs the worker a few ms of its own CPU
    raise RuntimeError(f"the workers handled only {handled:.0f} of {count} events")


def _cpu(used: CpuUsed | None, events: int) -> str:
    """The CPU figures for a row ("" where /proc cannot be read)."""
    return "" if used is None else f"; {used.describe(events)}"


async def _redis_bytes(settings: Settings) -> int:
    client = redis.Redis.from_url(settings.redis.url)
    try:
        info = await client.info("memory")
        empty = 1_000_000  # a fresh redis-server's own use, about
        return max(0, int(info["used_memory"]) - empty)
    finally:
        await client.aclose()


async def _change_flags(settings: Settings) -> dict[bool, int]:
    consumer = AIOKafkaConsumer(settings.kafka.topics.changes,
                                bootstrap_servers=settings.kafka.bootstrap,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    flags: dict[bool, int] = {}
    try:
        while batch := await consumer.getmany(timeout_ms=1000, max_records=10_000):
            for records in batch.values():
                for record in records:
                    flag = bool(orjson.loads(record.value).get("backfill"))
                    flags[flag] = flags.get(flag, 0) + 1
    finally:
        await consumer.stop()
    return flags


