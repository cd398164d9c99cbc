"""The simulator against a real broker (Tansu): what it plans is what lands, keyed and paced."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from support import consume_all

from segmenter.settings import Topics, load_settings
from streams.tools.traffic.personas import entity_id, plan_events
from streams.tools.traffic.simulator import simulate

pytestmark = pytest.mark.integration

END = 1_767_225_600.0
TOPICS: Topics = load_settings(environ={}).kafka.topics


async def consume(bootstrap: str, count: int, timeout: float = 30.0) -> list[Any]:
    """Read the three input topics from the start until ``count`` messages (or time runs out)."""
    return await consume_all(bootstrap, list(TOPICS.inputs), until=lambda got: len(got) >= count,
                             timeout=timeout, settle_ms=300)


async def test_every_planned_event_lands_on_its_topic_keyed_by_entity(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    personas = tmp_path / "personas.jsonl"
    progress: list[tuple[int, int]] = []
    result = await simulate(
        kafka_bootstrap, TOPICS, users=40, rate=20_000, duration=60, seed=3, days=90,
        personas_out=personas, end_ts=END, on_progress=lambda *p: progress.append(p),
    )
    events, plans = plan_events(users=40, days=90, seed=3, end_ts=END)
    assert result.planned == result.sent == len(events) > 500
    assert result.last_event_ts == events[-1]["ts"]
    assert result.users == 40 and progress[-1] == (len(events), len(events))

    messages = await consume(kafka_bootstrap, len(events))
    by_topic = Counter(message.topic for message in messages)
    planned_by_topic = Counter(TOPICS.by_kind[event["kind"]] for event in events)
    assert by_topic == planned_by_topic
    assert set(by_topic) == set(TOPICS.inputs)

    planned = {event["event_id"]: event for event in events}
    per_key: dict[tuple[str, str], list[str]] = defaultdict(list)
    for message in messages:
        value = orjson.loads(message.value)
        assert value == planned[value["event_id"]]
        assert message.key.decode() == entity_id(value)
        assert TOPICS.inputs[message.topic] == value["kind"]
        per_key[message.topic, message.key.decode()].append(value["event_id"])
    for (topic, key), ids in per_key.items():  # one key, one partition: in event-time order
        assert ids == [e["event_id"] for e in events
                       if entity_id(e) == key and TOPICS.by_kind[e["kind"]] == topic]
    assert set(plans) <= {key for _, key in per_key}

    rows = [orjson.loads(line) for line in personas.read_bytes().splitlines()]
    assert {row["entity_id"]: row["persona"] for row in rows} == {
        key: plan.persona for key, plan in plans.items()}


@pytest.mark.serial
async def test_rate_and_duration_bound_what_is_sent(kafka_bootstrap: str) -> None:
    result = await simulate(kafka_bootstrap, TOPICS, users=40, rate=200, duration=1.0, seed=4,
                            end_ts=END)
    assert result.sent < result.planned
    assert 120 <= result.sent <= 260
    assert 0.9 <= result.elapsed_s <= 2.0
    messages = await consume(kafka_bootstrap, result.sent)
    assert len(messages) == result.sent  # everything acknowledged is there, nothing else


async def test_as_fast_as_possible_sends_everything(kafka_bootstrap: str) -> None:
    result = await simulate(kafka_bootstrap, TOPICS, users=30, rate=0, duration=60, seed=5,
                            end_ts=END)
    assert result.sent == result.planned > 0
    assert len(await consume(kafka_bootstrap, result.sent)) == result.sent


async def test_cancelling_flushes_what_was_handed_over(kafka_bootstrap: str) -> None:
    progress: list[int] = []
    task = asyncio.create_task(simulate(
        kafka_bootstrap, TOPICS, users=40, rate=400, duration=60, seed=6, end_ts=END,
        on_progress=lambda sent, planned: progress.append(sent),
    ))
    while (not progress or progress[-1] < 100) and not task.done():
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    delivered = progress[-1]
    messages = await consume(kafka_bootstrap, delivered + 1, timeout=3.0)
    assert delivered <= len(messages) < delivered + 20  # at most the batch in flight beyond


def test_a_shift_makes_one_persona_behave_as_another_from_then_on() -> None:
    from streams.tools.traffic.personas import plan_events
    from streams.tools.traffic.simulator import shift_personas

    end = 1_767_225_600.0
    events, plans = plan_events(300, 90, 7, end)
    shifted = shift_personas(events, plans, "window_shopper=bargain_hunter@0.7", 7, end, 90)
    at = end - 90 * 86_400 * 0.3
    # an anonymous shopper who starts buying logs in: as u<index>, like every customer
    shoppers = {i for p in plans.values() if p.persona == "window_shopper"
                for i in (f"u{p.index:05d}", p.anonymous_id)}

    def theirs(log: list[dict]) -> list[dict]:
        return [e for e in log if (e.get("user_id") or e["anonymous_id"]) in shoppers]

    assert not [e for e in theirs(events) if e["kind"] == "order"]
    assert all(e["ts"] >= at for e in theirs(shifted) if e["kind"] == "order")
    assert len({e["user_id"] for e in theirs(shifted) if e["kind"] == "order"}) > 0.9 * len(
        [p for p in plans.values() if p.persona == "window_shopper"])
    others = [e for e in events if (e.get("user_id") or e["anonymous_id"]) not in shoppers]
    assert [e for e in shifted if (e.get("user_id") or e["anonymous_id"]) not in shoppers
            ] == others
    assert [e["ts"] for e in shifted] == sorted(e["ts"] for e in shifted)
