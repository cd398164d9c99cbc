"""Redis that lost its data (restarted without persistence, flushed, failed over to an empty
replica) is rebuilt from the workers' state, without a restart and without new events.

Each worker keeps a sentinel key per input partition it owns, ``{prefix}:built:{partition}``,
set once every user of that partition is in Redis. Every :data:`CHECK_S` it looks for its
partitions' sentinels; a missing one means Redis does not hold those users (or never did:
the first start). Their memberships are then written again from the stored records, in
slices between the worker's batches, and every segment's profile after them; the sentinel
is set last, so a worker stopped halfway starts over. A rebuild marks itself in Redis when it
starts (a key of its own) and sets the sentinels only if that mark is still there: Redis
losing its data again while it ran would otherwise get sentinels for users it never received.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable

from redis.exceptions import RedisError

from segmenter.records import UserRecord
from streams.runtime import metrics
from streams.runtime.sinks.redis import RedisMembership
from streams.runtime.state.change_outbox import is_user_key

log = logging.getLogger(__name__)

CHECK_S = 5.0
#: Users written per slice (one Lua call); about 20 ms of the loop.
SLICE = 1000
#: A rebuild's mark outlives a worker that died while rebuilding by at most this.
MARK_TTL_S = 24 * 3600

#: Sets the sentinels (KEYS[2:]) only if the rebuild's mark (KEYS[1]) is still there.
FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 2, #KEYS do redis.call('SET', KEYS[i], '1') end
redis.call('DEL', KEYS[1])
return 1
"""


class RedisRebuild:
    """Notices partitions whose users Redis does not hold, and writes them again."""

    def __init__(self, redis: RedisMembership, partition_of: Callable[[str], int]) -> None:
        self.redis = redis
        self.partition_of = partition_of
        self.rebuilding: set[int] = set()
        self._keys: deque[bytes] = deque()
        self._stored: Callable[[], Iterable[bytes]] = tuple
        self._next_check = 0.0
        self.mark = f"{redis.prefix}:rebuilding:{uuid.uuid4().hex}"
        self._finish = redis.client.register_script(FINISH)

    def sentinel(self, partition: int) -> str:
        return f"{self.redis.prefix}:built:{partition}"

    async def check(self, owned: Iterable[int], keys: Callable[[], Iterable[bytes]]) -> None:
        """Every :data:`CHECK_S`: queue the users of owned partitions without a sentinel."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + CHECK_S
        partitions = sorted(set(owned) - self.rebuilding)
        if not partitions:
            return
        try:
            async with self.redis.client.pipeline(transaction=False) as pipe:
                for partition in partitions:
                    pipe.exists(self.sentinel(partition))
                found = await pipe.execute()
        except (RedisError, OSError) as exc:  # Redis down: the writes' retries report it
            log.debug("cannot check Redis sentinels: %s", exc)
            return
        missing = [p for p, present in zip(partitions, found, strict=True) if not present]
        if missing:
            log.warning("Redis does not hold the users of partitions %s (restarted empty?); "
                        "writing them again from the stored state", missing)
            if not self.rebuilding:
                try:
                    await self._start(keys)
                except (RedisError, OSError) as exc:  # gone again: the next check retries
                    log.debug("cannot start the rebuild: %s", exc)
                    return
            self.rebuilding.update(missing)

    async def _start(self, keys: Callable[[], Iterable[bytes]]) -> None:
        await self.redis.client.set(self.mark, b"1", ex=MARK_TTL_S)
        self._stored = keys
        self._keys = deque(keys())  # at C speed; the slices filter them

    async def step(self, load: Callable[[str], UserRecord | None]) -> int:
        """Write one slice of the users being rebuilt; when all are, their profiles and
        sentinels. Returns how many users were written."""
        if not self.rebuilding:
            return 0
        memberships = {}
        while self._keys and len(memberships) < SLICE:
            key = self._keys.popleft()
            if not is_user_key(key):
                continue
            user_id = key.decode()
            if self.partition_of(user_id) in self.rebuilding:
                record = load(user_id)
                if record is not None:
                    memberships[user_id] = record.segments
        if memberships:
            metrics.record_sizes(await self.redis.write(memberships, []))
        if not self._keys:
            metrics.record_sizes(await self.redis.refresh_all_profiles())
            sentinels = [self.sentinel(partition) for partition in sorted(self.rebuilding)]
            if not await self._finish(keys=[self.mark, *sentinels]):
                log.warning("Redis lost its data again while partitions %s were rebuilt; "
                            "starting over", sorted(self.rebuilding))
                await self._start(self._stored)
                return len(memberships)
            log.info("Redis holds the users of partitions %s again", sorted(self.rebuilding))
            self.rebuilding.clear()
        return len(memberships)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions given to another worker (a rebalance): their owner rebuilds them."""
        self.rebuilding.difference_update(partitions)
