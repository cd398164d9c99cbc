"""Current membership in Redis: what personalization services read, one round trip per user.

Keys (prefix ``seg`` by default):

- ``seg:user:{user_id}``: hash, segmentation -> segment
- ``seg:members:{segmentation}:{segment}``: set of user ids
- ``seg:segments:{segmentation}``: hash, segment -> JSON profile (with ``size``)
- ``seg:kpi:{segmentation}:{segment}`` (and ``seg:kpi:shop``): hash, ``{day}:{counter}`` ->
  count, the day as days since 1970-01-01 UTC (see :mod:`segmenter.kpis`)
- ``seg:size:{segmentation}:{segment}``: hash, hour (hours since 1970, UTC) -> members then,
  for the last 30 days

A batch's memberships are written by one Lua script call (the users as one JSON argument:
packing a command per user cost the worker more than Redis spent running them), so a reader
never sees a user in two segments of one segmentation; profiles follow in the same pipeline.
Writing the full membership (not a diff) keeps the write idempotent: replaying a batch after a
crash repairs Redis instead of drifting from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from segmenter.kpis import KpiCount
from streams.runtime import metrics

log = logging.getLogger(__name__)

SET_MEMBERSHIPS = """
local members, user_prefix = ARGV[1], ARGV[2]
for _, entry in ipairs(cjson.decode(ARGV[3])) do
  local user_id, pairs = entry[1], entry[2]
  local user_key = user_prefix .. user_id
  local given = {}
  for i = 1, #pairs, 2 do
    local segmentation, segment = pairs[i], pairs[i + 1]
    given[segmentation] = true
    local old = redis.call('HGET', user_key, segmentation)
    if old and old ~= segment then
      redis.call('SREM', members .. segmentation .. ':' .. old, user_id)
    end
    if segment == '' then
      redis.call('HDEL', user_key, segmentation)
    else
      redis.call('SADD', members .. segmentation .. ':' .. segment, user_id)
      redis.call('HSET', user_key, segmentation, segment)
    end
  end
  -- segmentations no longer configured (a rule removed from config/segments.yaml)
  local stored = redis.call('HGETALL', user_key)
  for i = 1, #stored, 2 do
    if not given[stored[i]] then
      redis.call('SREM', members .. stored[i] .. ':' .. stored[i + 1], user_id)
      redis.call('HDEL', user_key, stored[i])
    end
  end
end
return 1
"""

WRITE_PROFILE = """
local profile = cjson.decode(ARGV[2])
profile['size'] = redis.call('SCARD', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(profile))
return profile['size']
"""


class RedisMembership:
    """Writes memberships and segment profiles; retries until Redis takes them."""

    def __init__(self, url: str, prefix: str, catalogue: Mapping[str, Mapping[str, str]],
                 open_ended: Iterable[str] = ()) -> None:
        """``open_ended``: segmentations whose segments are not known in advance (country):
        every segment of theirs gets a profile."""
        self.client = redis.Redis.from_url(url)
        self.prefix = prefix
        self.catalogue = {name: dict(segments) for name, segments in catalogue.items()}
        self.open_ended = frozenset(open_ended)
        #: Segmentation -> segment -> more profile fields (the behaviour model's profiles).
        self.details: dict[str, Mapping[str, Mapping[str, object]]] = {}
        self._set_memberships = self.client.register_script(SET_MEMBERSHIPS)
        self._write_profile = self.client.register_script(WRITE_PROFILE)

    def user_key(self, user_id: str) -> str:
        return f"{self.prefix}:user:{user_id}"

    async def write(
        self,
        memberships: Mapping[str, Mapping[str, str]],
        touched_segments: Iterable[tuple[str, str]],
        kpis: Iterable[KpiCount] = (),
    ) -> dict[tuple[str, str], int]:
        """Store each user's full membership, refresh touched profiles, add the KPI counts;
        return the touched segments' sizes.

        Only segments still in the catalogue get a profile: a user leaving a behaviour segment
        that a new model version dropped must not bring its profile back. KPI counts are
        added, not set: a batch written again after a crash counts them again (they are
        statistics; memberships stay exact)."""
        touched = sorted(t for t in set(touched_segments)
                         if t[0] in self.open_ended or t[1] in self.catalogue.get(t[0], ()))
        kpis = list(kpis)
        attempt = 0
        while True:
            try:
                return await self._write_once(memberships, touched, kpis)
            except (RedisError, OSError) as exc:
                attempt += 1
                metrics.REDIS_ERRORS.inc()
                delay = min(5.0, 0.1 * 2**attempt)
                log.warning("Redis write failed (%s); retry %d in %.1fs", exc, attempt, delay)
                await asyncio.sleep(delay)

    async def _write_once(
        self, memberships: Mapping[str, Mapping[str, str]], touched: list[tuple[str, str]],
        kpis: list[KpiCount],
    ) -> dict[tuple[str, str], int]:
        members = f"{self.prefix}:members:"
        async with self.client.pipeline(transaction=False) as pipe:
            if memberships:
                users = [[user_id, [part for segmentation in self.catalogue for part in (
                    segmentation, segments.get(segmentation, ""))]]
                    for user_id, segments in memberships.items()]
                await self._set_memberships(
                    keys=[], args=[members, self.user_key(""), orjson.dumps(users)], client=pipe)
            for segmentation, segment in touched:
                await self._write_profile(
                    keys=[f"{members}{segmentation}:{segment}",
                          f"{self.prefix}:segments:{segmentation}"],
                    args=[segment, self._profile(segmentation, segment)],
                    client=pipe,
                )
            for count in kpis:
                pipe.hincrby(self.kpi_key(count.segmentation, count.segment),
                             f"{count.day}:{count.name}", count.amount)
            results = await pipe.execute()
        results = results[:len(results) - len(kpis)]
        sizes = results[1:] if memberships else results
        return dict(zip(touched, sizes, strict=True))

    def _profile(self, segmentation: str, segment: str) -> bytes:
        details = self.details.get(segmentation, {}).get(segment, {})
        return orjson.dumps({
            **details,
            "segmentation": segmentation,
            "segment": segment,
            "description": self.catalogue.get(segmentation, {}).get(segment, ""),
        })

    async def replace_profiles(
        self, segmentation: str, profiles: Mapping[str, Mapping[str, object]]
    ) -> dict[tuple[str, str], int]:
        """Profiles of a segmentation whose segments change (a new behaviour model version):
        write them all and drop those of segments that are gone."""
        self.catalogue[segmentation] = {s: str(p.get("description", "")) for s, p in
                                        profiles.items()}
        self.details[segmentation] = profiles
        key = f"{self.prefix}:segments:{segmentation}"
        try:
            gone = [s for s in await self.client.hkeys(key) if s.decode() not in profiles]
            if gone:
                await self.client.hdel(key, *gone)
        except (RedisError, OSError) as exc:  # stale profiles are harmless; go on
            log.warning("could not drop the profiles of removed segments: %s", exc)
        return await self.write({}, [(segmentation, segment) for segment in profiles])

    async def refresh_all_profiles(self) -> dict[tuple[str, str], int]:
        """Write every known segment's profile (at start, so empty segments are listed too);
        drop the profiles of segmentations no longer configured."""
        try:
            async for key in self.client.scan_iter(match=f"{self.prefix}:segments:*"):
                if key.decode().removeprefix(f"{self.prefix}:segments:") not in self.catalogue:
                    await self.client.delete(key)
        except (RedisError, OSError) as exc:  # stale profiles are harmless; go on
            log.warning("could not drop the profiles of removed segmentations: %s", exc)
        every = [(s, name) for s, names in self.catalogue.items() for name in names]
        return await self.write({}, every)

    def kpi_key(self, segmentation: str, segment: str) -> str:
        if not segmentation:
            return f"{self.prefix}:kpi:shop"
        return f"{self.prefix}:kpi:{segmentation}:{segment}"

    async def close(self) -> None:
        await self.client.aclose()
