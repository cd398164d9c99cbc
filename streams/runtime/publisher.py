"""Writing a batch's outcome: Redis first, then the Kafka records (dead letters, identity
handoffs, the trainer's statistics, change events and the state's changelog).

Redis is written before anything is produced, and input is acknowledged only after every
produced record is delivered (:func:`written`), so after a crash the change topic never runs
ahead of Redis and the replayed input repairs both.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from segmenter.engine import SegmentChange, SegmentEngine, UserRecord
from segmenter.settings import Settings
from streams.runtime import metrics
from streams.runtime.app import SegmenterApp
from streams.runtime.messages import BatchOutcome, DeadLetter
from streams.runtime.sinks.redis import RedisMembership
from streams.runtime.slices import SliceTimer
from streams.runtime.state.change_outbox import ChangeOutbox, keep_delivered
from streams.runtime.state.parsed_records import ParsedRecords
from streams.runtime.state.record_batches import RecordBatches

log = logging.getLogger(__name__)

#: A dead letter's key and value above this are cut (a broker takes 1 MB by default); the
#: record then says the original's size and SHA-256.
DEAD_LETTER_MAX_BYTES = 512 * 1024
#: Parsed records kept for the next batches (live sessions bring the same users back): a few
#: MB, whatever the number of users.
PARSED_RECORDS = 4096
DEAD_LETTER_DETAIL_CHARS = 2000


class OutcomePublisher:
    """Publishes what the batch step produced; ``users`` is the worker's state table."""

    def __init__(self, settings: Settings, app: SegmenterApp, engine: SegmentEngine,
                 redis: RedisMembership, users: Any, partition_of: Callable[[str], int]) -> None:
        """``partition_of``: a user's input partition, which is also their changelog's."""
        self.settings = settings
        self.partition_of = partition_of
        self.app = app
        self.engine = engine
        self.redis = redis
        self.users = users
        self.changes_topic = settings.kafka.topics.changes
        self.outbox = ChangeOutbox(app.producer._ensure_producer, self.changes_topic,
                                   users.changelog_topic.get_topic_name, lambda: users.data)
        #: The records just stored, parsed, for the next load of the same users.
        self.parsed: ParsedRecords[UserRecord] = ParsedRecords(PARSED_RECORDS)

    async def publish(self, outcome: BatchOutcome, watermark: float) -> list[Awaitable[Any]]:
        """Write a batch's results: Redis before returning; the Kafka records (dead letters,
        handoffs, statistics, changes, the table's changelog) as the futures returned."""
        for failure in outcome.failures:
            log.error("%s", failure)
        pending = [await self._send_dead_letter(dead) for dead in outcome.dead_letters]
        for key, value in outcome.handoffs:
            pending.append(await self.app.producer.send(
                self.settings.kafka.topics.identity, key.encode(), value, None, None, None))
        stats = self.engine.take_statistics()
        if stats is not None:
            # With the batch, before its offsets are acknowledged: the trainer's sums stay whole.
            pending.append(await self.app.producer.send(
                self.settings.kafka.topics.behavior_stats, None, stats.to_json(), 0, None, None))
        # A record folded in but unsettled keeps the segments Redis already holds.
        memberships = {user_id: record.segments for user_id, record in outcome.records.items()
                       if record.unsettled is None}
        touched = touched_segments(outcome.changes)
        started = time.perf_counter()
        kpis = self.engine.kpis.take()
        sizes = await self.redis.write(memberships, touched, kpis)
        metrics.record_kpis(kpis)
        written_at = time.time()
        metrics.STAGE_SECONDS.labels("redis").inc(time.perf_counter() - started)
        backfill_after_s = 60 * self.settings.worker.backfill_after_minutes
        slices = SliceTimer()
        changes: dict[str, list[bytes]] = {}
        for change in outcome.changes:
            changes.setdefault(change.user_id, []).append(
                change.to_json(written_at, backfill_after_s))
            await slices.pause_if_due()
        # The records (with their outboxes) first; the change events once they are stored.
        seq = self.outbox.next_seq()
        batches = RecordBatches(self.app.producer._ensure_producer())
        carrying = await self._store(outcome, batches, changes, seq, slices)
        stored = await batches.send()
        pending += stored
        if changes:
            sending = self.outbox.send_after(stored, changes, seq, self.partition_of)
            sending.add_done_callback(lambda sent: self._keep_delivered(carrying, sent))
            pending.append(sending)
        metrics.record_batch(outcome, sizes, written_at, watermark)
        return pending

    async def _store(self, outcome: BatchOutcome, batches: RecordBatches,
                     changes: dict[str, list[bytes]], seq: int, slices: SliceTimer,
                     ) -> list[tuple[bytes, int]]:
        """Write the touched records, each with its outbox, to the table and its changelog;
        return the keys (and partitions) of those stored with an outbox.

        Straight into the store and through the producer rather than ``table[key] = value``:
        Faust queues each table write in a 100-message buffer that it drains one message at a
        time, and stops delivering input while it is over that size, which made the changelog
        the worker's bottleneck. The records go to the changelog partition of the user's input
        partition (as Faust's own partitioner would put them), so recovery reads them back.
        """
        topic = self.users.changelog_topic.get_topic_name()
        store = self.users.data
        fill = self.outbox.fill
        parked: dict[int, dict[str, list[bytes]]] = {}
        carrying = []
        for user_id, record in outcome.records.items():
            key = user_id.encode()
            partition = self.partition_of(user_id)
            if user_id in outcome.deleted:
                value = None
                store.pop(key, None)  # a tombstone in the changelog
                self.parsed.drop(key)
                if user_id in changes:  # their exits, kept until delivered
                    parked.setdefault(partition, {})[user_id] = changes[user_id]
            else:
                if record.outbox or user_id in changes:
                    fill(record, partition, changes.get(user_id, []), seq)
                value = store[key] = record.to_bytes()
                self.parsed.keep(key, value, record)
                if record.outbox:  # stored with it (see UserRecord.to_bytes)
                    carrying.append((key, partition))
            batches.add(topic, partition, key, value)
            # The seq's changes are sent only after these records: pausing races nothing.
            await slices.pause_if_due()
        for partition, exits in parked.items():
            key, value = self.outbox.park(partition, seq, exits)
            store[key] = value
            batches.add(topic, partition, key, value)
        return carrying

    def _keep_delivered(self, written: list[tuple[bytes, int]], sent: Any) -> None:
        """A write's change events are delivered: its records stay in memory without their
        outbox (:func:`keep_delivered`). One that carried only an earlier write's outbox
        keeps it until its next write (rare: the two writes overlapped)."""
        if not sent.cancelled() and sent.exception() is None:
            keep_delivered(self.users.data, written, self.outbox.delivered, self.parsed)

    async def _send_dead_letter(self, dead: DeadLetter) -> Awaitable[Any]:
        message = dead.message
        detail = dead.detail[:DEAD_LETTER_DETAIL_CHARS]
        log.warning("dead letter %s/%d@%d: %s", message.topic, message.partition,
                    message.offset, detail)
        headers = [
            ("deadletter.reason", dead.reason.encode()),
            ("deadletter.detail", detail.encode()),
            ("deadletter.topic", message.topic.encode()),
            ("deadletter.partition", str(message.partition).encode()),
            ("deadletter.offset", str(message.offset).encode()),
        ]
        value, key = message.value, message.key
        if len(value or b"") + len(key or b"") > DEAD_LETTER_MAX_BYTES:
            # Larger than the broker takes: its head, and what identifies the original.
            headers += [("deadletter.original_size", str(len(value or b"")).encode()),
                        ("deadletter.sha256", hashlib.sha256(value or b"").hexdigest().encode())]
            value, key = (value or b"")[:DEAD_LETTER_MAX_BYTES // 2], (key or b"")[:1024]
        return await self.app.producer.send(
            self.settings.kafka.topics.deadletter, key, value, None, None, headers)


def touched_segments(changes: list[SegmentChange]) -> set[tuple[str, str]]:
    touched = set()
    for change in changes:
        for segment in (change.previous, change.current):
            if segment is not None:
                touched.add((change.segmentation, segment))
    return touched
