"""The read side: a user's segments and the segment profiles, as stored in Redis."""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as redis


class MembershipReader:
    def __init__(self, url: str, prefix: str) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.prefix = prefix

    async def user(self, user_id: str) -> dict[str, str]:
        """Segmentation -> segment for one user: a single HGETALL, as services do it."""
        return await self.client.hgetall(f"{self.prefix}:user:{user_id}")

    async def segments(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Segmentation -> segment -> profile (description, size, ...)."""
        result: dict[str, dict[str, dict[str, Any]]] = {}
        pattern = f"{self.prefix}:segments:*"
        async for key in self.client.scan_iter(match=pattern, count=100):
            segmentation = key.removeprefix(f"{self.prefix}:segments:")
            profiles = await self.client.hgetall(key)
            result[segmentation] = {
                name: orjson.loads(profile) for name, profile in sorted(profiles.items())
            }
        return dict(sorted(result.items()))

    async def close(self) -> None:
        await self.client.aclose()
