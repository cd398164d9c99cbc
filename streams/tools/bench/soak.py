"""Soak for ``segmenter bench``: one worker under live traffic at 70% of its measured rate for
minutes. Printed: its RSS growth once warm (every user of the fixed population seen: each
user's first session comes before anyone's second), the dead letters of that valid traffic, and
whether it kept up."""

from __future__ import annotations

import asyncio
import random
import time

import orjson
from aiokafka import AIOKafkaProducer

from segmenter.settings import Settings
from streams.tools.local.services import WorkerProcess

#: The live population: after the warm-up each has been seen, so state stops growing.
USERS = 20_000
#: Users browsing at once: each a session of a few to a few dozen events, as on a live shop
#: (a user's events come in bursts; uniformly random users would be no shop's traffic).
SESSIONS = 200
TICK_S = 0.1


async def soak(settings: Settings, worker: WorkerProcess, rate: float, seconds: float,
               warmup_s: float, users: int = USERS, lateness_s: float | None = None) -> str:
    """Produce valid live events at ``rate`` for ``seconds``; a line of figures.

    RSS is first read once the worker has handled every user's first session, at least
    ``warmup_s`` in and, with the worker's allowed lateness ``lateness_s``, at least twice
    that in: by then every user's window of recent event ids is full (ids are pruned once
    twice as many as the window needs have gathered). Growth after that is neither new users
    nor state filling its bounds, which is what a leak would show as."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, linger_ms=5,
                                max_batch_size=512 * 1024)
    await producer.start()
    rng = random.Random(5)
    # Every user's first session comes before any second one, so that by the end of the
    # warm-up each user of the population has state (the growth measured after it is then the
    # state of users already known, not new users).
    first_visits = [f"soak-{n}" for n in rng.sample(range(users), users)]
    sessions = [_session(rng, first_visits, users) for _ in range(SESSIONS)]
    warmup_s = max(warmup_s, 2 * lateness_s) if lateness_s else warmup_s
    sent, warm_rss, warm_at, checked = 0, 0.0, 0.0, 0.0
    all_seen: int | None = None  # events sent when the last user's first session began
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            target = int(rate * (elapsed + TICK_S))
            while sent < target:
                slot = rng.randrange(SESSIONS)
                user, left = sessions[slot]
                sessions[slot] = ((user, left - 1) if left > 1
                                  else _session(rng, first_visits, users))
                topic, key, value = _event(settings, rng, user, sent)
                await producer.send(topic, value, key=key)
                sent += 1
                if all_seen is None and not first_visits:
                    all_seen = sent
            if (not warm_rss and all_seen is not None and elapsed >= warmup_s
                    and elapsed - checked >= 1.0):
                checked = elapsed
                if worker.handled() >= all_seen:
                    warm_rss, warm_at = worker.metric("process_resident_memory_bytes"), elapsed
            await asyncio.sleep(max(0.0, started + elapsed + TICK_S - time.monotonic()))
        await producer.flush()
    finally:
        await producer.stop()
    deadline = time.monotonic() + 120
    while worker.handled() < sent and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    handled, behind = worker.handled(), time.monotonic() - started - seconds
    end_rss = worker.metric("process_resident_memory_bytes")
    dead = worker.metric("segmenter_invalid_events_total")
    growth = end_rss / warm_rss - 1 if warm_rss else float("nan")
    warm = (f"RSS {warm_rss / 1e6:.0f} MB once warm ({warm_at:.0f} s: every user seen, "
            f"recent ids full) -> {end_rss / 1e6:.0f} MB at the end ({growth:+.1%})" if warm_rss
            else f"RSS {end_rss / 1e6:.0f} MB at the end (no growth figure: warm is every user "
            f"seen and {warmup_s:.0f} s gone, and the run did not get there)")
    window = f", allowed lateness {lateness_s / 60:.0f} min" if lateness_s else ""
    return (f"{seconds / 60:.1f} min at {rate:,.0f} events/s (70% of single), {users:,} users in "
            f"sessions, {SESSIONS} at once{window}: {warm}; {dead:.0f} dead letters of "
            f"{sent:,} valid events; "
            f"{handled:,.0f} handled, {max(0.0, behind):.1f} s after the last was sent")


def _session(rng: random.Random, first_visits: list[str], users: int) -> tuple[str, int]:
    user = first_visits.pop() if first_visits else f"soak-{rng.randrange(users)}"
    return user, rng.randint(3, 40)


def _event(settings: Settings, rng: random.Random, user: str, n: int,
           ) -> tuple[str, bytes, bytes]:
    # Event ids as trackers make them: random UUIDs (they are most of a user's stored state).
    event: dict[str, object] = {"event_id": f"{rng.getrandbits(128):032x}", "ts": time.time(),
                                "user_id": user}
    draw = rng.random()
    topics = settings.kafka.topics
    if draw < 0.85:
        event.update(page=f"/p/{rng.randrange(500)}", product_id=f"p{rng.randrange(500)}",
                     category=f"c{rng.randrange(20)}")
        topic = topics.clicks
    elif draw < 0.95:
        event.update(action="add", product_id=f"p{rng.randrange(500)}", price=19.9)
        topic = topics.carts
    else:
        event.update(order_id=f"soak-o{n}", total=round(rng.uniform(5, 300), 2))
        topic = topics.orders
    return topic, user.encode(), orjson.dumps(event)
