"""``segmenter forget USER_ID``: ask the workers to forget a user, and wait for Redis to
confirm it (see :mod:`streams.runtime.forget` for what the worker does)."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import redis.asyncio as redis
from aiokafka import AIOKafkaProducer

from segmenter.settings import Settings
from streams.runtime.kafka_options import client_options


def forget_request(user_id: str) -> bytes:
    """The forget topic's message value for ``user_id``."""
    return orjson.dumps({"user_id": user_id, "request_id": uuid.uuid4().hex,
                         "requested_at": time.time()})


async def request_forget(settings: Settings, user_id: str, timeout_s: float) -> int:
    """Send the request; return 0 once Redis no longer holds the user, 1 on a time-out."""
    store = redis.Redis.from_url(settings.redis.url)
    key = f"{settings.redis.key_prefix}:user:{user_id}"
    producer = AIOKafkaProducer(**client_options(settings.kafka))
    try:
        known = bool(await store.exists(key))
        await producer.start()
        try:
            await producer.send_and_wait(settings.kafka.topics.forget,
                                         forget_request(user_id), key=user_id.encode())
        finally:
            await producer.stop()
        if not known:
            print(f"{user_id}: requested; Redis did not hold this user (unknown to the workers, "
                  "or forgotten already)")
            return 0
        deadline = time.monotonic() + timeout_s
        while await store.exists(key):
            if time.monotonic() > deadline:
                print(f"{user_id}: requested, but Redis still holds the user after "
                      f"{timeout_s:.0f} s (is a worker running?)")
                return 1
            await asyncio.sleep(0.2)
    finally:
        await store.aclose()
    print(f"{user_id}: forgotten (state, Redis membership and segments removed; exit changes "
          "published)")
    return 0
