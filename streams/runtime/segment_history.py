"""A short history of every segment's size, entries and exits, sampled by the workers for the
segment explorer's plots (``segmenter ui``).

Redis holds the current state; a plot of size over time needs past states. At most once per
``worker.history_interval_s`` (shop-wide: the first worker to take the key
``{prefix}:history:due``, which expires after the interval, takes the sample; the others skip),
each segmentation gets one sample appended to the list ``{prefix}:history:{segmentation}``,
capped at ``worker.history_samples`` entries (oldest dropped). A sample is JSON::

    {"t": 1764496800.0, "segments": {"champions": [412, 1030, 618], ...}}

with per segment ``[members, entries, exits]``: the members now, and the entries and exits
counted so far over all days (the sums of the KPI counters ``{day}:entries`` and
``{day}:exits`` of ``{prefix}:kpi:{segmentation}:{segment}``, which every worker adds to).
Totals rather than per-interval counts, so that a missed sample, a restart or a second worker
loses nothing: a reader takes the difference between two samples. Everything lives in Redis,
so the history survives a worker's restart. The sums run as a Lua script inside Redis (one
call per segment, pipelined): the worker's event loop only awaits replies of three numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

#: KEYS[1]: a segment's members, KEYS[2]: its KPI hash -> {members, entries, exits}.
SEGMENT_TOTALS = """
local entries, exits = 0, 0
local counts = redis.call('HGETALL', KEYS[2])
for i = 1, #counts, 2 do
  local name = counts[i]
  if string.sub(name, -8) == ':entries' then
    entries = entries + tonumber(counts[i + 1])
  elseif string.sub(name, -6) == ':exits' then
    exits = exits + tonumber(counts[i + 1])
  end
end
return {redis.call('SCARD', KEYS[1]), entries, exits}
"""


@dataclass(frozen=True, slots=True)
class Sample:
    """One segmentation at wall-clock time ``t``: segment -> (members, entries, exits), the
    entries and exits being totals so far (see the module's doc)."""

    t: float
    segments: dict[str, tuple[int, int, int]]


class SegmentHistory:
    """The worker's side: :meth:`tick` (called often, e.g. every second) samples when due."""

    def __init__(self, client: redis.Redis, prefix: str, interval_s: float, samples: int,
                 ready: Callable[[], bool] = lambda: True) -> None:
        """``ready``: whether the worker's memberships are written (no samples before)."""
        self.client = client
        self.prefix = prefix
        self.interval_ms = max(1, round(interval_s * 1000))
        self.samples = samples
        self.ready = ready
        self._totals = client.register_script(SEGMENT_TOTALS)
        #: Monotonic time before which no sample can be due (the shop-wide key still holds).
        self._not_before = 0.0

    async def tick(self) -> bool:
        """Take a sample if none was taken shop-wide within the interval; True if taken."""
        if not self.ready() or time.monotonic() < self._not_before:
            return False
        due = f"{self.prefix}:history:due"
        try:
            if not await self.client.set(due, b"1", nx=True, px=self.interval_ms):
                # Another worker sampled: ask again when its key expires, not every tick.
                self._not_before = time.monotonic() + max(0, await self.client.pttl(due)) / 1000
                return False
            self._not_before = time.monotonic() + self.interval_ms / 1000
            await self._sample(time.time())
        except (RedisError, OSError) as exc:  # a missed sample is a gap in a plot, no more
            log.warning("could not sample the segments' history: %s", exc)
            return False
        return True

    async def _sample(self, now: float) -> None:
        segmentations = await self._segments()
        async with self.client.pipeline(transaction=False) as pipe:
            for segmentation, segments in segmentations.items():
                for segment in segments:
                    name = f"{segmentation}:{segment}"
                    await self._totals(keys=[f"{self.prefix}:members:{name}",
                                             f"{self.prefix}:kpi:{name}"], client=pipe)
            totals = iter(await pipe.execute())
        async with self.client.pipeline(transaction=False) as pipe:
            for segmentation, segments in segmentations.items():
                sample = {"t": round(now, 3),
                          "segments": {segment: next(totals) for segment in segments}}
                key = f"{self.prefix}:history:{segmentation}"
                pipe.rpush(key, orjson.dumps(sample))
                pipe.ltrim(key, -self.samples, -1)
            await pipe.execute()

    async def _segments(self) -> dict[str, list[str]]:
        """Segmentation -> its segments, as their profiles list them (empty segments too)."""
        found: dict[str, list[str]] = {}
        prefix = f"{self.prefix}:segments:"
        async for key in self.client.scan_iter(match=f"{prefix}*", count=100):
            name = as_text(key).removeprefix(prefix)
            found[name] = sorted(as_text(segment) for segment in await self.client.hkeys(key))
        return found


async def read_history(client: redis.Redis, prefix: str, segmentation: str) -> list[Sample]:
    """A segmentation's samples, oldest first."""
    raw = await client.lrange(f"{prefix}:history:{segmentation}", 0, -1)
    samples = []
    for item in raw:
        data = orjson.loads(item)
        samples.append(Sample(float(data["t"]), {
            segment: (int(size), int(entries), int(exits))
            for segment, (size, entries, exits) in data["segments"].items()}))
    return samples


def as_text(value: bytes | str) -> str:
    """A Redis reply as text, whichever way the client decodes."""
    return value.decode() if isinstance(value, bytes) else value
