"""Quiet time: with no events the stream's clock follows the wall clock (less a lag), so a
customer lapses on schedule through a quiet night; in the batch step alone and in a worker."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
import redis.asyncio as redis
from support import produce, wait_for, worker_env
from test_faults import ready

from segmenter.engine import SegmentEngine, UserRecord
from segmenter.settings import load_settings
from streams.runtime.batch import BatchProcessor
from streams.runtime.messages import Message
from streams.tools.local.services import WorkerProcess

SETTINGS = load_settings(environ={})
DAY = 86_400.0
LAPSING_DAYS = SETTINGS.segmentations.lifecycle.lapsing_after_days


def an_order(user: str, ts: float) -> Message:
    return Message("shop.orders", 0, 0, user.encode(), orjson.dumps({
        "event_id": f"{user}-o", "ts": ts, "user_id": user, "order_id": f"{user}-o",
        "total": 50.0}), ts)


def quiet_shop(last_order: float) -> tuple[BatchProcessor, dict[str, UserRecord]]:
    processor = BatchProcessor(SegmentEngine(SETTINGS), SETTINGS.kafka.topics, 3600)
    processor.quiet_after_s, processor.quiet_lag_s = 60.0, 3600.0
    outcome = processor.process([an_order("u1", last_order)], {}.get)
    assert outcome.records["u1"].segments["lifecycle"] == "new_customer"
    return processor, dict(outcome.records)


def test_the_clock_follows_the_wall_clock_once_the_input_is_read_and_quiet() -> None:
    last_order = time.time() - 100 * DAY
    processor, store = quiet_shop(last_order)
    lapse_at = last_order + LAPSING_DAYS * DAY
    # Input still waiting on the broker: the clock does not move, however quiet.
    processor.input_at -= 120
    processor.follow_wall_clock(lambda topic, partition: False, now=lapse_at + 7200)
    assert processor.watermark == last_order
    # Events a moment ago: not quiet yet.
    processor.input_at = time.monotonic()
    processor.follow_wall_clock(lambda topic, partition: True, now=lapse_at + 7200)
    assert processor.watermark == last_order
    # Read and quiet for a minute: wall clock less the lag, and the customer lapses.
    processor.input_at -= 120
    processor.follow_wall_clock(lambda topic, partition: True, now=lapse_at + 7200)
    assert processor.watermark == lapse_at + 3600
    changes = processor.review(store.get, 100, lambda topic, partition: False).changes
    assert [(c.segmentation, c.current) for c in changes
            if c.segmentation == "lifecycle"] == [("lifecycle", "lapsing")]
    # The clock never goes back: a wall clock behind the stream's event time is ignored.
    processor.follow_wall_clock(lambda topic, partition: True, now=last_order)
    assert processor.watermark == lapse_at + 3600


@pytest.mark.integration
async def test_a_worker_lapses_a_customer_on_schedule_with_no_events_coming(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, redis_url, tmp_path,
                     config="  quiet_after_s: 2\n  quiet_clock_lag_minutes: 0\n")
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with WorkerProcess(env, tmp_path / "w.log") as worker:
            await ready(worker)
            # Their only order: LAPSING_DAYS ago, less 15 seconds (time for the worker to
            # place them on a busy machine). Event time alone would stop there.
            last_order = time.time() - LAPSING_DAYS * DAY + 15
            message = an_order("quiet-night", last_order)
            await produce(kafka_bootstrap, [(message.topic, message.key, message.value)])

            async def lifecycle_is(stage: str) -> bool:
                return await store.hget("seg:user:quiet-night", "lifecycle") == stage

            await wait_for(lambda: lifecycle_is("new_customer"), timeout=30,
                           what="the customer in Redis")
            assert time.time() < last_order + LAPSING_DAYS * DAY  # not due yet
            await wait_for(lambda: lifecycle_is("lapsing"), timeout=40,
                           what=lambda: f"the customer to lapse\n{worker.log()[-2000:]}")
            assert time.time() >= last_order + LAPSING_DAYS * DAY
    finally:
        await store.aclose()
