"""A worker taking up its partitions (at start and after each rebalance): the table completed
from the changelog, the owned users counted in the population, the change events the last life
may not have delivered sent again, and users whose settings or quantiles moved re-evaluated;
in slices, so a worker with a million users does not hold the loop while it does."""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from typing import Any, Protocol

from segmenter.engine import SegmentEngine, UserRecord
from streams.runtime import metrics
from streams.runtime.batch import BatchProcessor
from streams.runtime.messages import BatchOutcome
from streams.runtime.publisher import OutcomePublisher
from streams.runtime.sinks.redis import RedisMembership
from streams.runtime.slices import give_turn
from streams.runtime.state.change_outbox import (
    PARKED_PREFIX,
    is_user_key,
    keep_delivered,
    parked_partition_seq,
)
from streams.runtime.state.changelog import read_changelog_tail


class Recovering(Protocol):
    """What a recovery needs of the worker (:class:`streams.runtime.worker.SegmentWorker`)."""

    engine: SegmentEngine
    processor: BatchProcessor
    publisher: OutcomePublisher
    redis: RedisMembership
    users: Any
    owned: set[int]

    def owns(self, user_id: str) -> bool: ...
    def partition(self, user_id: str) -> int: ...
    async def commit(self, outcome: BatchOutcome) -> None: ...

log = logging.getLogger(__name__)

#: Stored records counted per slice of a recovery.
RECOVERY_SLICE = 2048
#: Stored records re-evaluated (and written) per slice.
RESTORE_SLICE = 256


async def complete_changelog(kafka: Any, users: Any, owned: set[int]) -> None:
    """Records the broker reported past the table's end: straight into the store (they are
    already in the changelog)."""
    tail = await read_changelog_tail(kafka, users.changelog_topic.get_topic_name(), owned)
    for key, value in tail:
        if value is None:
            users.data.pop(key, None)
        else:
            users.data[key] = value
    if tail:
        log.info("read %d changelog records past the broker's reported end", len(tail))


async def restore_owned(worker: Recovering) -> int:
    """Count the owned users, re-send undelivered change events, re-evaluate who needs it;
    return how many users the worker owns."""
    engine, processor, outbox = worker.engine, worker.processor, worker.publisher.outbox
    # Only the customers of the partitions owned now count here (and shop-wide).
    engine.population.retain(worker.owns)
    owned, parked = owned_keys(worker.users.data, worker.owns, worker.owned)
    outbox.recovered(worker.owned)
    # Two passes, each decoding the records again: the population must be whole before anyone
    # is re-scored, and keeping a million decoded records between the passes would cost far
    # more memory than the second decoding costs time.
    again = outbox.unparked(parked)  # deleted users' exits: before any later outbox
    for chunk in _chunks(owned, RECOVERY_SLICE):
        records = _records(engine, worker.users.data, chunk)
        for user_id, changes in outbox.undelivered(records, worker.partition).items():
            again.setdefault(user_id, []).extend(changes)
        processor.adopt(records)
        await give_turn()
    # Before anything new: what the last life may not have delivered, as it was.
    await outbox.republish(again, worker.owned)
    rescored = engine.refresh_population()
    reevaluated = 0
    for chunk in _chunks(owned, RESTORE_SLICE):
        # Every recovered outbox is delivered now: kept without it, as the publisher keeps them.
        keep_delivered(worker.users.data, [(key, worker.partition(key.decode())) for key in chunk],
                       outbox.delivered)
        outcome = processor.restore(_records(engine, worker.users.data, chunk), rescored)
        reevaluated += len(outcome.records)
        await worker.commit(outcome)
    await worker.commit(BatchOutcome())  # sends the population's counts to the trainer
    if reevaluated:
        log.info("re-evaluated %d users under new settings or quantiles", reevaluated)
    metrics.record_sizes(await worker.redis.refresh_all_profiles())
    return len(owned)


def owned_keys(store: MutableMapping[bytes, bytes], owns: Any,
               owned: set[int]) -> tuple[list[bytes], list[bytes]]:
    """The stored users of the partitions owned here, and the parked exits there."""
    users, parked = [], []
    for key in list(store.keys()):
        if is_user_key(key):
            if owns(key.decode()):
                users.append(key)
        elif key.startswith(PARKED_PREFIX) and parked_partition_seq(key)[0] in owned:
            parked.append(key)
    return users, parked


def _records(engine: SegmentEngine, store: MutableMapping[bytes, bytes],
             keys: list[bytes]) -> list[tuple[str, UserRecord]]:
    return [(key.decode(), engine.load_record(store[key])) for key in keys if key in store]


def _chunks(items: list[bytes], size: int) -> Iterator[list[bytes]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
