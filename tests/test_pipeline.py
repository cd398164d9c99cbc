"""End to end on a real broker (Tansu) and a real redis-server: events in, segments out."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as redis
from support import KIND, batch_segments, consume_all, event_message, produce, wait_for

from streams.tools.local.embedded import free_port
from streams.tools.local.services import WorkerProcess

pytestmark = pytest.mark.integration

DAY = 86_400.0
CLICKS, CARTS, ORDERS = "shop.clicks", "shop.carts", "shop.orders"


@pytest.fixture
def worker_env(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "test.yaml"
    config.write_text(
        "kafka:\n  session_timeout_s: 6\n"
        f"worker:\n  data_dir: {tmp_path / 'data'}\n  log_level: info\n"
        # A worker that stops consuming logs where its tasks wait, within the tests' waits.
        "  stall_timeout_s: 25\n"
    )
    return {
        "SEGMENTER_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "SEGMENTER_REDIS_URL": redis_url,
        "SEGMENTER_METRICS_PORT": str(free_port()),
        "SEGMENTER_CONFIG": str(config),
    }


@pytest.fixture
def worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    yield process
    process.stop()


@pytest.fixture
async def store(redis_url: str) -> Any:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


def click(event_id: str, ts: float, user: str | None = None, anon: str | None = None) -> dict:
    event = {"event_id": event_id, "ts": ts, "page": "/p/1", "product_id": "p1",
             "category": "shoes"}
    if user:
        event["user_id"] = user
    if anon:
        event["anonymous_id"] = anon
    return event


def order(event_id: str, ts: float, user: str, total: float) -> dict:
    return {"event_id": event_id, "ts": ts, "user_id": user, "order_id": event_id,
            "total": total, "currency": "EUR",
            "items": [{"product_id": "p1", "category": "shoes", "price": total, "quantity": 1}]}


def shop_history(now: float) -> list[tuple[str, dict]]:
    """A visitor, a new customer, a loyal champion and a customer gone quiet."""
    events: list[tuple[str, dict]] = [(CLICKS, click("v1-c1", now - 60, anon="visitor-1"))]
    events += [(CLICKS, click("n1-c1", now - 3600, user="new-1")),
               (ORDERS, order("n1-o1", now - 3500, "new-1", 40.0))]
    events += [(ORDERS, order(f"ch-o{i}", now - i * 5 * DAY, "champ-1", 150.0)) for i in range(12)]
    events += [(ORDERS, order(f"q-o{i}", now - (200 + i * 7) * DAY, "quiet-1", 90.0))
               for i in range(4)]
    return sorted(events, key=lambda topic_event: topic_event[1]["ts"])


async def redis_state(store: Any, users: list[str]) -> dict[str, dict[str, str]]:
    return {user: await store.hgetall(f"seg:user:{user}") for user in users}


async def test_events_become_segments_changes_and_metrics(
    kafka_bootstrap: str, store: Any, worker: WorkerProcess, worker_env: dict[str, str]
) -> None:
    now = time.time()
    events = shop_history(now)
    await produce(kafka_bootstrap, [event_message(t, e) for t, e in events])
    expected = batch_segments(events)
    assert expected["champ-1"] == {"rfm": "champions", "lifecycle": "loyal", "vip": "vip"}
    assert expected["quiet-1"]["lifecycle"] == "churned"
    assert expected["visitor-1"] == {"lifecycle": "visitor"}

    async def settled() -> bool:
        return await redis_state(store, list(expected)) == expected

    await wait_for(settled, what=lambda: f"Redis memberships {expected}\n{worker.log()}")
    for user, segments in expected.items():
        for segmentation, segment in segments.items():
            assert await store.sismember(f"seg:members:{segmentation}:{segment}", user)
    profile = orjson.loads(await store.hget("seg:segments:lifecycle", "visitor"))
    assert profile["size"] == 1 and profile["description"]

    final_state = {(u, s): seg for u, segs in expected.items() for s, seg in segs.items()}
    changes = await consume_all(kafka_bootstrap, "segments.changes",
                                until=lambda got: replay(got) == final_state)
    assert replay(changes) == final_state
    decoded = [orjson.loads(message.value) for message in changes]
    champion = [c for c in decoded if c["user_id"] == "champ-1"]
    assert ("lifecycle", None, "loyal") in {
        (c["segmentation"], c["previous"], c["current"]) for c in champion}
    assert all(message.key == b"champ-1" for message in changes
               if orjson.loads(message.value)["user_id"] == "champ-1")
    first = champion[0]
    assert set(first) >= {"event_id", "user_id", "segmentation", "previous", "current", "ts",
                          "emitted_at"}
    assert first["ts"].startswith(time.strftime("%Y-%m-%d", time.gmtime(now)))
    assert len({c["event_id"] for c in decoded}) == len(decoded)

    port = worker_env["SEGMENTER_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert f'segmenter_events_total{{topic="{ORDERS}"}} {float(len(events) - 2)}' in text
    assert 'segmenter_segment_size{segment="loyal",segmentation="lifecycle"} 1.0' in text
    assert "segmenter_processing_latency_seconds_count" in text


async def test_bad_messages_go_to_dead_letters_and_good_ones_still_flow(
    kafka_bootstrap: str, store: Any, worker: WorkerProcess
) -> None:
    now = time.time()
    bad = [
        (CLICKS, b"u-bad", b"{not json"),
        (CLICKS, b"u-bad", b"[1, 2, 3]"),
        (ORDERS, b"u-bad", orjson.dumps({"event_id": "x1", "ts": now, "user_id": "u-bad"})),
        (CARTS, b"u-bad", orjson.dumps({"event_id": "x2", "ts": "last tuesday",
                                        "user_id": "u-bad", "action": "add",
                                        "product_id": "p"})),
        (CLICKS, b"u-bad", orjson.dumps({"event_id": "x3", "ts": now, "page": "/"})),
        (CLICKS, b"u-bad", orjson.dumps(click("x4", now + 30 * DAY, user="u-bad"))),
        # after good-1's order at `now`: three days late, beyond the allowed lateness
        event_message(ORDERS, order("x5", now - 3 * DAY, "good-1", 10.0)),
    ]
    good = [event_message(ORDERS, order("g1", now, "good-1", 25.0)),
            event_message(CLICKS, click("g2", now, anon="good-2"))]
    await produce(kafka_bootstrap, bad[:3] + good[:1] + bad[3:] + good[1:])

    letters = await consume_all(kafka_bootstrap, "shop.deadletter",
                                until=lambda got: len(got) >= len(bad))
    assert sorted(m.value for m in letters) == sorted(value for _, _, value in bad)
    reasons = {}
    for message in letters:
        headers = {name: value.decode() for name, value in message.headers}
        assert headers["deadletter.topic"] in KIND
        assert int(headers["deadletter.offset"]) >= 0 and int(headers["deadletter.partition"]) >= 0
        reasons[message.value] = (headers["deadletter.reason"], headers["deadletter.detail"])
    assert reasons[b"{not json"][0] == "invalid_json"
    assert reasons[b"[1, 2, 3]"][0] == "not_an_object"
    assert reasons[bad[2][2]] == ("missing_field",
                                  "order_id: Field required; total: Field required")
    assert reasons[bad[3][2]][0] == "invalid_field" and "ts" in reasons[bad[3][2]][1]
    assert "user_id or anonymous_id" in reasons[bad[4][2]][1]
    assert reasons[bad[5][2]][0] == "ts_in_future"
    assert reasons[bad[6][2]][0] == "too_late"

    expected = batch_segments([(ORDERS, order("g1", now, "good-1", 25.0)),
                                  (CLICKS, click("g2", now, anon="good-2"))])
    assert expected["good-2"] == {"lifecycle": "visitor"}

    async def good_ones_landed() -> bool:
        return await redis_state(store, ["good-1", "good-2"]) == expected

    await wait_for(good_ones_landed, what="good events processed")
    assert await store.exists("seg:user:u-bad") == 0
    assert worker.alive


async def test_restart_loses_nothing_and_duplicates_nothing(
    kafka_bootstrap: str, store: Any, worker: WorkerProcess
) -> None:
    now = time.time()
    users = [f"r{i}" for i in range(20)]
    first = [(ORDERS, order(f"{u}-o1", now - 10 * DAY, u, 60.0)) for u in users]
    second = [(ORDERS, order(f"{u}-o2", now, u, 60.0)) for u in users[:10]]
    second += first[:5]  # replayed duplicates must be counted once

    await produce(kafka_bootstrap, [event_message(t, e) for t, e in first])
    after_first = batch_segments(first)

    seen: dict[str, dict[str, str]] = {}

    async def matches(expected: dict[str, dict[str, str]]) -> bool:
        seen.update(await redis_state(store, users))
        return seen == expected

    def diff(expected: dict[str, dict[str, str]]) -> str:
        return str([(u, got, expected[u]) for u, got in seen.items() if got != expected[u]][:3])

    await wait_for(lambda: matches(after_first), what=lambda: diff(after_first), timeout=20)
    assert worker.stop() == 0, worker.log()

    await produce(kafka_bootstrap, [event_message(t, e) for t, e in second])
    worker.start()
    expected = batch_segments(first + second[:10])
    assert {expected[u]["lifecycle"] for u in users[:10]} == {"repeat"}
    await wait_for(lambda: matches(expected),
                   what=lambda: f"state after restart {diff(expected)}\n{worker.log()[-3000:]}")

    for segmentation in ("rfm", "lifecycle"):
        members: list[str] = []
        for key in await store.keys(f"seg:members:{segmentation}:*"):
            members += await store.smembers(key)
        assert sorted(members) == sorted(users)  # each user in exactly one segment

    # Replayed in order and deduplicated by event id, the change log ends at the Redis state.
    final_state = {(u, s): seg for u, segs in expected.items() for s, seg in segs.items()}
    changes = await consume_all(kafka_bootstrap, "segments.changes",
                                until=lambda got: replay(got) == final_state)
    assert replay(changes) == final_state


def replay(messages: list[Any]) -> dict[tuple[str, str], str | None]:
    """Apply change events in order (one user's changes share a partition), dropping repeats."""
    seen: set[str] = set()
    state: dict[tuple[str, str], str | None] = {}
    for message in messages:
        change = orjson.loads(message.value)
        if change["event_id"] in seen:
            continue
        seen.add(change["event_id"])
        key = (change["user_id"], change["segmentation"])
        assert state.get(key) == change["previous"], change
        state[key] = change["current"]
        if change["current"] is None:
            del state[key]
    return state


async def test_a_rule_added_to_the_rule_file_takes_effect_on_restart(
    kafka_bootstrap: str, store: Any, worker_env: dict[str, str], tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("segments:\n  big:\n    rule: monetary >= 100\n")
    env = {**worker_env, "SEGMENTER_RULES_FILE": str(rules)}
    now = time.time()
    events = [(ORDERS, order("a1", now - 60, "a", 150.0)), (ORDERS, order("b1", now, "b", 20.0)),
              (CLICKS, click("v1", now, anon="v"))]
    users = ["a", "b", "v"]
    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        await produce(kafka_bootstrap, [event_message(t, e) for t, e in events])
        before = batch_segments(events, env)
        assert before["a"]["big"] == "big" and "big" not in before["b"]
        await wait_for(lambda: redis_matches(store, before),
                       what=lambda: f"first rules in Redis\n{worker.log()}")
        assert worker.stop() == 0, worker.log()

        # The marketer drops `big` and adds `small`; nothing else happens in the shop.
        rules.write_text("segments:\n  small:\n    rule: orders >= 1 and monetary < 100\n")
        worker.start()
        after = batch_segments(events, env)
        assert after["b"]["small"] == "small" and "small" not in after["a"]
        assert not any("big" in segments for segments in after.values())
        await wait_for(lambda: redis_matches(store, after),
                       what=lambda: f"new rules in Redis\n{worker.log()}")
    assert await store.smembers("seg:members:small:small") == {"b"}

    async def big_is_gone() -> bool:  # its profile goes once recovery has written the users
        return await store.exists("seg:members:big:big", "seg:segments:big") == 0

    await wait_for(big_is_gone, timeout=10, what="the dropped rule's keys to go")
    assert orjson.loads(await store.hget("seg:segments:small", "small"))["size"] == 1

    final_state = {(u, s): seg for u, segs in after.items() for s, seg in segs.items()}
    changes = await consume_all(kafka_bootstrap, "segments.changes",
                                until=lambda got: replay(got) == final_state)
    assert replay(changes) == final_state
    decoded = [orjson.loads(message.value) for message in changes]
    moved_by_config = {(c["user_id"], c["segmentation"], c["current"]) for c in decoded
                       if c["cause"].startswith("config@")}
    assert moved_by_config == {("a", "big", None), ("b", "small", "small")}
    assert sorted(users) == sorted(after)


async def redis_matches(store: Any, expected: dict[str, dict[str, str]]) -> bool:
    return await redis_state(store, list(expected)) == expected
