"""The behaviour model on a real broker and redis-server: learned by the workers, kept over a
restart with the same ids, and one model version for two workers."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as redis
from support import TOPIC, consume_to_end, event_message, produce, wait_for

from streams.tools.local.embedded import free_port
from streams.tools.local.services import WorkerProcess
from streams.tools.traffic.personas import plan_events

pytestmark = pytest.mark.integration

VERSION = "segmenter_behavior_model_version"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "test.yaml"
    path.write_text(
        "kafka:\n  session_timeout_s: 6\n"
        f"worker:\n  data_dir: {tmp_path / 'data'}\n  log_level: info\n"
        # a compressed history: three topics consumed side by side drift apart in event time
        "features:\n  allowed_lateness_minutes: 200000\n"
        "segmentations:\n  behavior:\n    warmup_users: 60\n    publish_interval_s: 0.5\n"
        "    refit_interval_s: 3600\n"
        "  value:\n    min_customers: 50\n"
    )
    return path


def env(kafka: str, redis_url: str, config: Path) -> dict[str, str]:
    return {"SEGMENTER_KAFKA_BOOTSTRAP": kafka, "SEGMENTER_REDIS_URL": redis_url,
            "SEGMENTER_METRICS_PORT": str(free_port()), "SEGMENTER_CONFIG": str(config)}


async def shop(kafka: str, users: int) -> list[str]:
    events, plans = plan_events(users=users, days=60, seed=4, end_ts=time.time() - 60)
    await produce(kafka, [event_message(TOPIC[e.pop("kind")], e) for e in events])
    return sorted(plans)


async def placed(store: Any, users: list[str], segmentation: str = "behavior",
                 ) -> dict[str, str | None]:
    return {user: await store.hget(f"seg:user:{user}", segmentation) for user in users}


async def settled(store: Any, users: list[str], workers: list[WorkerProcess]) -> dict:
    """Wait until every user has a behaviour segment and the model stopped changing."""
    async def everyone_placed() -> bool:
        return None not in (await placed(store, users)).values()

    await wait_for(everyone_placed, timeout=90,
                   what=lambda: "behaviour segments\n" + workers[0].log()[-3000:])
    # The model's published sizes count every user (a first fit on the part of the shop read
    # by then sizes its segments on that part, and the sample doubling later brings a refit),
    # and no new version for 8 s (a loaded machine went 20 s between two versions).
    last, since, sized = -1.0, time.monotonic(), 0.0
    deadline = since + 120
    while time.monotonic() - since < 8:
        assert time.monotonic() < deadline, f"version {last}, sizes for {sized} users"
        version = workers[0].metric(VERSION)
        profiles = await store.hgetall("seg:segments:behavior")
        sized = sum(orjson.loads(profile).get("size", 0) for profile in profiles.values())
        if version != last or sized < len(users):  # they may count a few more (151 of 150)
            last, since = version, time.monotonic()
        await wait_for_seconds(0.5)
    return await placed(store, users)


async def wait_for_seconds(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def loads_version(worker: WorkerProcess, version: float) -> None:
    """Wait until the worker predicts with ``version``, then a little longer."""
    await wait_for(lambda: _true(worker.metric(VERSION) == version), timeout=60,
                   what=lambda: f"model version {version}\n" + worker.log()[-3000:])
    await wait_for_seconds(3)


async def behaviour_changes_since(kafka: str, since: float) -> list[dict[str, Any]]:
    await asyncio.sleep(1)  # what the worker was still sending has arrived
    changes = await consume_to_end(kafka, "segments.changes")
    behavior = [orjson.loads(m.value) for m in changes]
    behavior = [c for c in behavior if c["segmentation"] == "behavior"]
    assert behavior and all(c["model_version"] >= 1 for c in behavior)
    return [c for c in behavior if _epoch(c["emitted_at"]) > since]


async def test_a_restart_keeps_the_model_its_ids_and_everyone_s_segment(
    kafka_bootstrap: str, redis_url: str, config: Path, tmp_path: Path
) -> None:
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    users = await shop(kafka_bootstrap, 150)
    worker = WorkerProcess(env(kafka_bootstrap, redis_url, config), tmp_path / "w.log").start()
    try:
        before = await settled(store, users, [worker])
        version = worker.metric(VERSION)
        profiles = await store.hgetall("seg:segments:behavior")
        assert version >= 1 and len(profiles) == len(set(before.values()))
        profile = orjson.loads(next(iter(profiles.values())))
        assert profile["model_version"] == version and profile["name"] and profile["size"] > 0
        # The value model came with the versions: every customer has a value tier, no visitor.
        customers = {u for u, rfm in (await placed(store, users, "rfm")).items() if rfm}
        tiers: dict[str, str | None] = {}

        async def customers_tiered() -> bool:
            tiers.update(await placed(store, users, "value_tier"))
            return {u for u, tier in tiers.items() if tier} == customers

        await wait_for(customers_tiered, timeout=30,
                       what=lambda: f"value tiers {tiers}\n{worker.log()[-2000:]}")
        assert len(customers) >= 50 and len(set(tiers.values()) - {None}) >= 2, tiers
        # What the restart must keep: everyone's segments once the model settled, just before
        # the stop (a version may still have re-placed some since the reads above).
        before = await settled(store, users, [worker])
        tiers = await placed(store, users, "value_tier")
        version = worker.metric(VERSION)
        assert worker.stop() == 0, worker.log()
        stopped_at = time.time()

        worker.start()
        await loads_version(worker, version)
        assert await placed(store, users) == before
        assert await placed(store, users, "value_tier") == tiers
    finally:
        worker.stop()
        await store.aclose()
    assert await behaviour_changes_since(kafka_bootstrap, stopped_at) == []


async def test_a_second_worker_changes_no_one_s_segment(
    kafka_bootstrap: str, redis_url: str, config: Path, tmp_path: Path
) -> None:
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    users = await shop(kafka_bootstrap, 150)
    first = WorkerProcess(env(kafka_bootstrap, redis_url, config), tmp_path / "w1.log").start()
    second = WorkerProcess(env(kafka_bootstrap, redis_url, config), tmp_path / "w2.log")
    try:
        before = await settled(store, users, [first])
        everything = {u: await store.hgetall(f"seg:user:{u}") for u in users}
        version = first.metric(VERSION)
        added_at = time.time()
        second.start()
        await loads_version(second, version)
        taken = re.findall(r"recovered (\d+) users", second.log())
        assert taken and int(taken[-1]) > 0  # the second worker took partitions over
        assert await placed(store, users) == before
        behaviour = {u: s.get("behavior") for u, s in everything.items()}
        assert behaviour == before
        # RFM too: its quintiles are the shop's, not each worker's share of it
        assert {u: await store.hgetall(f"seg:user:{u}") for u in users} == everything
    finally:
        first.stop()
        second.stop()
        await store.aclose()
    assert await behaviour_changes_since(kafka_bootstrap, added_at) == []


async def test_two_workers_predict_with_the_same_model_version(
    kafka_bootstrap: str, redis_url: str, config: Path, tmp_path: Path
) -> None:
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    workers = [WorkerProcess(env(kafka_bootstrap, redis_url, config), tmp_path / f"w{n}.log")
               for n in range(2)]
    try:
        for worker in workers:
            worker.start()
        users = await shop(kafka_bootstrap, 150)
        final = await settled(store, users, workers)
        versions = {worker.metric(VERSION) for worker in workers}
        assert len(versions) == 1 and versions.pop() >= 1, [w.log()[-2000:] for w in workers]
        assert all(worker.handled() > 0 for worker in workers)  # both did share the work
        assert len(set(final.values())) >= 3
    finally:
        for worker in workers:
            worker.stop()
        await store.aclose()


async def _true(value: bool) -> bool:
    return value


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
