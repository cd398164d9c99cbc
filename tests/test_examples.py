"""The example consumers under examples/, run as their users run them, against a live worker.

A real broker, a real redis-server and a worker subprocess produce the change events and the
memberships; the examples run as subprocesses that know nothing of this project but the
documented formats (docs/outputs.md).
"""

from __future__ import annotations

import ast
import asyncio
import doctest
import importlib.util
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from support import batch_segments, consume_all, event_message, produce, wait_for, worker_env

from streams.tools.local.services import WorkerProcess

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MARKETING = EXAMPLES / "marketing_automation.py"
PERSONALIZATION = EXAMPLES / "personalization_service.py"
ORDERS, CLICKS, CHANGES = "shop.orders", "shop.clicks", "segments.changes"
HOUR = 3600.0
#: The marketing example's triggers in the test: a rule segment, and a lifecycle stage reached
#: by a move (new_customer -> repeat), not only by an enter.
TRIGGERS = ["vip", "lifecycle:repeat"]


@pytest.fixture
def worker(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    env = worker_env(kafka_bootstrap, redis_url, tmp_path, config="  stall_timeout_s: 25\n")
    process = WorkerProcess(env, tmp_path / "worker.log").start()
    yield process
    process.stop()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Any]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


def order(event_id: str, ts: float, user: str, total: float) -> dict[str, Any]:
    return {"event_id": event_id, "ts": ts, "user_id": user, "order_id": event_id,
            "total": total, "currency": "EUR"}


def click(event_id: str, ts: float, anon: str) -> dict[str, Any]:
    return {"event_id": event_id, "ts": ts, "anonymous_id": anon, "page": "/p/1"}


class Shop:
    """The events sent so far, and the worker's Redis checked against a batch recomputation."""

    def __init__(self, bootstrap: str, store: Any, worker: WorkerProcess) -> None:
        self.bootstrap, self.store, self.worker = bootstrap, store, worker
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def send(self, events: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, str]]:
        """Produce ``events``, wait until Redis holds what they lead to; return that."""
        self.events += events
        await produce(self.bootstrap, [event_message(topic, e) for topic, e in events])
        expected = batch_segments(self.events)

        async def settled() -> bool:
            return all([await self.store.hgetall(f"seg:user:{user}") == segments
                        for user, segments in expected.items()])

        await wait_for(settled, timeout=30,
                       what=lambda: f"Redis memberships {expected}\n{self.worker.log()[-3000:]}")
        return expected


async def run_marketing(bootstrap: str, group: str, max_events: int) -> tuple[list[dict], dict]:
    """Run the example until it has read ``max_events``: (campaigns printed, its summary)."""
    triggers = [arg for segment in TRIGGERS for arg in ("--segment", segment)]
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(MARKETING), "--bootstrap", bootstrap, "--group", group, *triggers,
        "--max-events", str(max_events), "--timeout", "20",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    summary = orjson.loads(err.decode().strip().splitlines()[-1])["summary"]
    return [orjson.loads(line) for line in out.decode().splitlines()], summary


def entered_pairs(campaigns: list[dict]) -> Counter[tuple[str, str, str]]:
    return Counter((c["user_id"], c["segmentation"], c["segment"]) for c in campaigns)


def last_segments(changes: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Each user's segments by their latest change per segmentation (changes in topic order)."""
    state: dict[str, dict[str, str]] = {}
    for change in changes:
        segments = state.setdefault(change["user_id"], {})
        segments.pop(change["segmentation"], None)
        if change["current"] is not None:
            segments[change["segmentation"]] = change["current"]
    return state


async def published(bootstrap: str, expected: dict[str, dict[str, str]]) -> list[Any]:
    """The topic's messages once the latest changes per user agree with ``expected`` (Redis is
    written before a batch's changes are sent, so a settled Redis does not mean they are out).

    Read until a condition holds rather than to the end offsets: Tansu's end offset of a
    partition lags behind when records arrive in batches.
    """
    def caught_up(messages: list[Any]) -> bool:
        latest = last_segments([orjson.loads(message.value) for message in messages])
        return all(latest.get(user) == segments for user, segments in expected.items())

    messages = await consume_all(bootstrap, CHANGES, until=caught_up, timeout=20)
    assert caught_up(messages), f"changes to reach {expected}"
    return messages


async def redeliver(bootstrap: str, changes: list[dict[str, Any]]) -> None:
    """Produce copies of changes already on the topic, as a worker re-sends after a crash."""
    await produce(bootstrap, [(CHANGES, c["user_id"].encode(), orjson.dumps(c))
                              for c in changes])


async def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    """The group's committed offsets on the change topic's partitions (0s left out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(CHANGES, p)
                      for p in sorted(consumer.partitions_for_topic(CHANGES) or ())]
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        return {tp: meta.offset for tp, meta in committed.items() if meta.offset > 0}
    finally:
        await consumer.stop()
        await admin.close()


async def offsets_after(bootstrap: str, count: int) -> dict[TopicPartition, int]:
    """Per partition, the offset after the last of the topic's first ``count`` messages."""
    messages = await consume_all(bootstrap, CHANGES, until=lambda got: len(got) >= count)
    assert len(messages) == count
    return {TopicPartition(CHANGES, m.partition): m.offset + 1
            for m in sorted(messages, key=lambda m: m.offset)}


async def check_marketing(bootstrap: str, expected: dict[str, dict[str, str]]) -> None:
    changes = [orjson.loads(message.value) for message in await published(bootstrap, expected)]
    old_entry = [c for c in changes if (c["user_id"], c["current"]) == ("old-1", "repeat")]
    assert [c["backfill"] for c in old_entry] == [True]
    vip_two = [c for c in changes if (c["user_id"], c["segmentation"]) == ("vip-2", "lifecycle")]
    assert [(c["type"], c["current"]) for c in vip_two][-1] == ("move", "repeat")
    # Every change re-delivered once, and the triggering ones once more.
    triggering = [c for c in changes if c["current"] in ("vip", "repeat")]
    await redeliver(bootstrap, changes + triggering)

    read = 2 * len(changes) + len(triggering)
    campaigns, summary = await run_marketing(bootstrap, "crm", read)
    assert entered_pairs(campaigns) == {("vip-1", "vip", "vip"): 1, ("vip-2", "vip", "vip"): 1,
                                        ("vip-2", "lifecycle", "repeat"): 1}
    assert {c["campaign"] for c in campaigns} == set(TRIGGERS)
    assert summary["read"] == read
    assert summary["duplicates"] == len(changes) + len(triggering)
    assert summary["skipped_backfill"] == 1  # old-1's entry into repeat
    by_id = {c["event_id"]: c for c in changes}
    assert all(by_id[c["change_id"]]["user_id"] == c["user_id"] for c in campaigns)
    # It committed what it acted on: a restart of the group goes on after these messages.
    assert await committed_offsets(bootstrap, "crm") == await offsets_after(bootstrap, read)


async def get_json(url: str) -> tuple[int, Any]:
    def fetch() -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, orjson.loads(error.read())

    return await asyncio.to_thread(fetch)


@pytest.fixture
async def personalization(redis_url: str) -> AsyncIterator[str]:
    """The service on a port of its choosing: its base URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(PERSONALIZATION), "--redis-url", redis_url, "--port", "0",
        stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
    assert line.startswith("listening on http://"), line
    yield line.removeprefix("listening on ").strip()
    process.terminate()
    assert await asyncio.wait_for(process.wait(), timeout=10) == 0


async def check_personalization(shop: Shop, url: str) -> None:
    """Answers follow Redis from one request to the next: nothing is cached."""
    assert await get_json(f"{url}/users/vip-3/offers") == (200, {
        "user_id": "vip-3", "segments": {},
        "offer": {"id": "bestsellers", "title": "This week's bestsellers"}})
    expected = await shop.send([(ORDERS, order("v3-o1", time.time(), "vip-3", 2000.0))])
    offers = {}
    for user, path in (("vip-3", "vip-3"), ("visitor 1/b", "visitor%201%2Fb"),
                       ("old-1", "old-1")):
        status, answer = await get_json(f"{url}/users/{path}/offers")
        assert status == 200 and answer["user_id"] == user
        assert answer["segments"] == await shop.store.hgetall(f"seg:user:{user}")
        assert answer["segments"] == expected[user]
        offers[user] = answer["offer"]["id"]
    assert offers == {"vip-3": "vip-early-access", "visitor 1/b": "first-order-10",
                      "old-1": "bestsellers"}
    assert (await get_json(f"{url}/users"))[0] == 404


async def test_examples_against_a_live_worker(
    kafka_bootstrap: str, store: Any, worker: WorkerProcess, personalization: str
) -> None:
    now = time.time()
    shop = Shop(kafka_bootstrap, store, worker)
    # old-1 became a repeat customer 19 hours ago: history being caught up, flagged backfill.
    await shop.send([(ORDERS, order("old-o1", now - 20 * HOUR, "old-1", 30.0)),
                     (ORDERS, order("old-o2", now - 19 * HOUR, "old-1", 30.0)),
                     (ORDERS, order("v1-o1", now - 60, "vip-1", 1500.0)),
                     (ORDERS, order("v2-o1", now - 50, "vip-2", 600.0)),
                     (CLICKS, click("c1", now - 40, "visitor 1/b"))])
    expected = await shop.send([(ORDERS, order("v2-o2", now - 10, "vip-2", 600.0))])
    assert expected["vip-2"]["lifecycle"] == "repeat" and expected["old-1"]["lifecycle"] == "repeat"
    await check_marketing(kafka_bootstrap, expected)
    await check_personalization(shop, personalization)


@pytest.mark.parametrize("example", [MARKETING, PERSONALIZATION], ids=lambda p: p.stem)
def test_examples_import_nothing_of_the_project(example: Path) -> None:
    """What a user copies must run with the standard library and the documented clients."""
    allowed = set(sys.stdlib_module_names) | {"__future__", "aiokafka", "orjson", "redis"}
    imported = set()
    for node in ast.walk(ast.parse(example.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported and imported <= allowed, imported - allowed


@pytest.mark.parametrize("example", [MARKETING, PERSONALIZATION], ids=lambda p: p.stem)
def test_examples_doctests(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Their docstring examples hold (examples/ is not among pytest's doctest paths)."""
    spec = importlib.util.spec_from_file_location(f"examples_{example.stem}", example)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    failed, attempted = doctest.testmod(module)
    assert attempted and not failed
