"""Faults on the real broker and Redis: what subscribers of the change topic receive stays one
exact history, in agreement with Redis and with a batch recomputation, through kill -9
mid-stream, a broker restart, a broker absent at start and SIGTERM with the broker gone."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from support import batch_segments, consume_to_end, event_message, produce, wait_for
from support import worker_env as support_env

from streams.runtime.app import _ConsumerThread
from streams.tools.local.embedded import EmbeddedKafka, EmbeddedObjectStore, free_port
from streams.tools.local.services import WorkerProcess

pytestmark = pytest.mark.integration

USERS = 200
ROUNDS = 6
#: Rule segments on exact order counts: a replay that reached another state would show.
RULES = """segments:
  four:
    rule: orders == 4
    min_dwell_minutes: 0
  five:
    rule: orders == 5
    min_dwell_minutes: 0
  repeat:
    rule: orders >= 2
    min_dwell_minutes: 0
"""


def worker_env(kafka: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return support_env(kafka, redis_url, tmp_path, rules=RULES,
                       config="segmentations:\n  rfm:\n    quantile_refresh_s: 3\n")


def orders_of(user: int) -> int:
    return 1 + user % ROUNDS  # 1 to 6 orders: each exact-count segment is entered and left


def round_events(round_: int, now: float) -> list[tuple[str, dict[str, Any]]]:
    """Round ``round_``: an order of every user who has one left, and clicks of everyone."""
    events: list[tuple[str, dict[str, Any]]] = []
    for user in range(USERS):
        user_id = f"u{user}"
        ts = now + round_ + user / 10_000
        events += [("shop.clicks", {"event_id": f"{user_id}-r{round_}-c{n}", "ts": ts,
                                    "user_id": user_id, "page": f"/p/{n}"}) for n in range(8)]
        if round_ < orders_of(user):
            events.append(("shop.orders", {
                "event_id": f"{user_id}-o{round_}", "ts": ts, "user_id": user_id,
                "order_id": f"{user_id}-o{round_}", "total": 30.0 + 7 * user % 50}))
    return events


def round_messages(round_: int, now: float) -> list[tuple[str, bytes, bytes]]:
    return [event_message(topic, event) for topic, event in round_events(round_, now)]


async def ready(worker: WorkerProcess) -> None:
    url = worker.metrics_url.replace("/metrics", "/health/ready")

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    await wait_for(lambda: _true(probe()), timeout=60, what="the worker to be ready")


async def handled_past(worker: WorkerProcess, count: float) -> None:
    await wait_for(lambda: _true(worker.handled() > count), timeout=60,
                   what="the worker to handle part of the round")


async def _true(value: bool) -> bool:
    return value


def chains(changes: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Per (user, segmentation), in topic order, each event id once (re-sent ones dropped, as
    the documented deduplication by event_id does)."""
    seen: set[str] = set()
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for change in changes:
        if change["event_id"] not in seen:
            seen.add(change["event_id"])
            by_key[(change["user_id"], change["segmentation"])].append(change)
    return by_key


async def test_kill_9_three_times_mid_stream_leaves_one_exact_change_history(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, redis_url, tmp_path)
    now = time.time() - 600
    worker = WorkerProcess(env, tmp_path / "w.log").start()
    lives = 1
    events: list[tuple[str, dict[str, Any]]] = []
    try:
        for round_ in range(ROUNDS):
            await ready(worker)
            events += round_events(round_, now)
            sending = asyncio.ensure_future(produce(kafka_bootstrap, round_messages(round_, now)))
            if round_ in (1, 3, 5):
                # Mid-stream: once this life has written part of the round, while it goes on.
                await handled_past(worker, worker.handled() + USERS * 2)
                os.kill(worker.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
                worker.process.wait()  # type: ignore[union-attr]
                worker = WorkerProcess(env, tmp_path / "w.log").start()
                lives += 1
            await sending
        await assert_one_exact_history(kafka_bootstrap, redis_url, events, env)
    finally:
        worker.stop()
    assert lives == 4 and worker.log().count("] recovered ") >= 4, worker.log()[-3000:]
    assert "(consumer: flow_active=" in worker.log()  # what a stall's log says of it


async def test_reading_again_fetches_what_a_partition_with_nothing_committed_skipped(
    kafka_bootstrap: str,
) -> None:
    """What a stalled worker's reread (and Faust after each recovery) does: seek to the
    committed offsets. A partition the group never committed in goes back to its beginning,
    past records the consumer had fetched and Faust dropped (the stall of a worker killed
    before its first commit); a changelog stays where its recovery left it."""
    orders, changelog = TopicPartition("shop.orders", 0), TopicPartition("x-changelog", 0)
    await produce(kafka_bootstrap, [(tp.topic, b"k", b"%d" % n)
                                    for tp in (orders, changelog) for n in range(10)])
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id="never-committed",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([orders, changelog])
        read = 0
        while read < 20:  # fetched and dropped: the position is past them all
            read += sum(len(r) for r in (await consumer.getmany(timeout_ms=2000)).values())
        thread = SimpleNamespace(_ensure_consumer=lambda: consumer, app=SimpleNamespace(
            tables=SimpleNamespace(changelog_topics={changelog.topic})))
        committed = await _ConsumerThread._seek_to_committed_or_beginning(thread)  # type: ignore[arg-type]
        assert committed == {orders: None, changelog: None}
        again = await consumer.getmany(timeout_ms=2000)
        assert [m.offset for m in again.get(orders, [])] == list(range(10))
        assert changelog not in again and await consumer.position(changelog) == 10
    finally:
        await consumer.stop()


async def test_a_broker_killed_and_restarted_mid_stream_loses_nothing(
    redis_url: str, tmp_path: Path
) -> None:
    """The broker (with persistent storage, as a real one has) is killed twice mid-stream and
    started again on the same address; the worker rides it out."""
    storage = EmbeddedObjectStore(log_path=tmp_path / "s3.log").start()
    kafka = EmbeddedKafka(log_path=tmp_path / "tansu.log", storage=storage).start()
    env = worker_env(kafka.bootstrap, redis_url, tmp_path)
    now = time.time() - 600
    worker = WorkerProcess(env, tmp_path / "w.log").start()
    events: list[tuple[str, dict[str, Any]]] = []
    try:
        for round_ in range(ROUNDS):
            await ready(worker)
            events += round_events(round_, now)
            await produce(kafka.bootstrap, round_messages(round_, now))
            if round_ in (2, 4):
                await handled_past(worker, worker.handled() + USERS * 2)
                kafka.kill()
                await asyncio.sleep(3)
                kafka.start()
        await assert_one_exact_history(kafka.bootstrap, redis_url, events, env)
        assert worker.alive, worker.log()[-3000:]
    finally:
        worker.stop()
        kafka.stop()
        storage.stop()


async def assert_one_exact_history(
    bootstrap: str, redis_url: str, events: list[tuple[str, dict[str, Any]]],
    env: dict[str, str],
) -> None:
    """Redis equals a batch recomputation over all the events; the change topic holds one
    chain per user and segmentation whose last change is what Redis holds."""
    expected = batch_segments(events, env)
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    held: dict[str, dict[str, str]] = {}

    async def redis_is_exact() -> bool:
        held.update({user: await store.hgetall(f"seg:user:{user}") for user in expected})
        return all(_without_behavior(held[user]) == segments
                   for user, segments in expected.items())

    def difference() -> str:
        wrong = {u: (_without_behavior(held.get(u, {})), s) for u, s in expected.items()
                 if _without_behavior(held.get(u, {})) != s}
        return f"Redis to equal the batch recomputation; {len(wrong)} differ, e.g. " + str(
            list(wrong.items())[:3])

    changes: list[dict[str, Any]] = []

    async def topic_agrees() -> bool:
        """Change events follow Redis by a round trip: read the topic until its last changes
        are what Redis holds."""
        # Redis read first: a behaviour model version may re-place users at any time, and its
        # changes reach the topic after Redis.
        held.update({user: await store.hgetall(f"seg:user:{user}") for user in expected})
        changes[:] = [orjson.loads(m.value)
                      for m in await consume_to_end(bootstrap, "segments.changes")]
        return all(_last_published(chains(changes), user) == held[user] for user in expected)

    try:
        await wait_for(redis_is_exact, timeout=120, what=difference)
        await wait_for(topic_agrees, timeout=30, what=lambda: _disagreement(changes, held))
    finally:
        await store.aclose()
    by_key = chains(changes)
    breaks = [(key, a["current"], b["previous"]) for key, chain in by_key.items()
              for a, b in zip([{"current": None}, *chain], chain, strict=False)
              if a["current"] != b["previous"]]
    assert breaks == [], f"{len(breaks)} breaks in the per-user chains, e.g. {breaks[:5]}"
    for user in expected:
        assert _last_published(by_key, user) == held[user], user
    # An exact-count segment is entered and left at most once each: never twice, never left
    # without having been entered. A user's fourth and fifth orders read in one batch (a
    # restarted worker, or one whose broker came back, reads two rounds at once) pass it by.
    for user in range(USERS):
        entered = [c["current"] for c in by_key[(f"u{user}", "four")]]
        assert entered in ([["four", None], []] if orders_of(user) > 4 else
                           [["four"]] if orders_of(user) == 4 else [[]]), (user, entered)


def _disagreement(changes: list[dict[str, Any]], held: dict[str, dict[str, str]]) -> str:
    by_key = chains(changes)
    differ = [(user, _last_published(by_key, user), segments) for user, segments in held.items()
              if _last_published(by_key, user) != segments]
    first = [(c["segmentation"], c["previous"], c["current"], c["cause"], c["event_id"][:8])
             for c in changes if differ and c["user_id"] == differ[0][0]]
    return (f"the change topic to end where Redis is; {len(differ)} differ, e.g. (topic, "
            f"Redis): {differ[:3]}; the first one's changes as on the topic: {first}")


def _last_published(by_key: dict[tuple[str, str], list[dict[str, Any]]],
                    user: str) -> dict[str, str]:
    return {segmentation: chain[-1]["current"] for (who, segmentation), chain in by_key.items()
            if who == user and chain[-1]["current"] is not None}


def _without_behavior(segments: dict[str, str]) -> dict[str, str]:
    """The behaviour model is fitted online from sampled statistics: no batch twin to compare."""
    return {name: segment for name, segment in segments.items() if name != "behavior"}


async def test_a_broker_absent_at_start_is_waited_for_then_the_worker_works(
    redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = worker_env(f"127.0.0.1:{port}", redis_url, tmp_path)
    worker = WorkerProcess(env, tmp_path / "w.log").start()
    try:
        await wait_for(lambda: _true("retrying every" in worker.log()), timeout=30,
                       what=lambda: f"a message that it waits: {worker.log()[-1000:]}")
        assert worker.alive
        with EmbeddedKafka(port=port, log_path=tmp_path / "tansu.log") as kafka:
            await ready(worker)
            order = {"event_id": "o1", "ts": time.time(), "user_id": "late-broker",
                     "order_id": "o1", "total": 20.0}
            await produce(kafka.bootstrap, [("shop.orders", b"late-broker", orjson.dumps(order))])
            store = redis.Redis.from_url(redis_url, decode_responses=True)
            try:
                await wait_for(lambda: _has_segments(store, "late-broker"), timeout=60,
                               what="the order's user in Redis")
            finally:
                await store.aclose()
            assert worker.stop() == 0
    finally:
        worker.stop()


async def test_sigterm_with_the_broker_gone_exits_within_10_s(
    redis_url: str, tmp_path: Path
) -> None:
    kafka = EmbeddedKafka(log_path=tmp_path / "tansu.log").start()
    try:
        worker = WorkerProcess(worker_env(kafka.bootstrap, redis_url, tmp_path),
                               tmp_path / "w.log").start()
        await ready(worker)
        await produce(kafka.bootstrap, round_messages(0, time.time() - 60))
        await handled_past(worker, 100)
    finally:
        kafka.stop()
    started = time.monotonic()
    code = worker.stop(timeout=30)
    assert time.monotonic() - started < 10, worker.log()[-2000:]
    assert code is not None


async def _has_segments(store: Any, user: str) -> bool:
    return bool(await store.hgetall(f"seg:user:{user}"))
