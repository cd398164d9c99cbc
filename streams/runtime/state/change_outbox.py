"""The change topic as an exact history: each user's change events are stored with their state
and produced only once that state is stored, so no crash leaves the topic and the state apart.

Without transactions (Tansu has none), a batch's change events and its user records are
separate writes, and a crash between them left subscribers with transitions that the next life
of the worker never knew of (it replayed from the older state with other batch boundaries and
published another sequence). Here, per write (a batch, a flush, a review slice), numbered by a
per-worker sequence ``seq``:

1. each touched user's record carries, as its **outbox**, the JSON of its change events not
   yet known delivered (this write's, after any of an earlier write still in flight) and the
   write's ``seq``; the records go to the table's changelog;
2. once they are delivered, the change events are produced, writes in order (a write's changes
   after the previous write's are delivered, so each user's chain reaches the topic in order);
3. once those are delivered, a **marker** per changelog partition says "outboxes up to ``seq``
   are delivered" (a record of the changelog under a key no user id has).

A user deleted by the write (a visitor merged into a customer, a user forgotten) has no record
to carry an outbox: their exit events are **parked** under a key of their own in the changelog
(``\x00outbox-parked:<partition>:<seq>``) and that key is deleted once they are delivered.

After a crash, recovery re-publishes every outbox (and parked exit) newer than its partition's
marker, byte for byte, so subscribers get each transition with the same ``event_id`` (at least
once, never under another id) and the topic's last change per user and segmentation is the
stored state's, which Redis holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

import orjson

from segmenter.records import UserRecord, without_outbox
from streams.runtime.partitioning import partition_of
from streams.runtime.state.parsed_records import ParsedRecords
from streams.runtime.state.record_batches import RecordBatches, written

log = logging.getLogger(__name__)

#: Table keys that are not user ids start with this byte (no user id does: ids are text).
RESERVED_PREFIX = b"\x00"


PARKED_PREFIX = RESERVED_PREFIX + b"outbox-parked:"


def marker_key(partition: int) -> bytes:
    return RESERVED_PREFIX + b"outbox-delivered:%d" % partition


def parked_key(partition: int, seq: int) -> bytes:
    return PARKED_PREFIX + b"%d:%d" % (partition, seq)


def parked_partition_seq(key: bytes) -> tuple[int, int]:
    partition, seq = key[len(PARKED_PREFIX):].split(b":")
    return int(partition), int(seq)


def is_user_key(key: bytes) -> bool:
    return not key.startswith(RESERVED_PREFIX)


def keep_delivered(store: MutableMapping[bytes, bytes], written: Iterable[tuple[bytes, int]],
                   delivered: Mapping[int, int], parsed: ParsedRecords[Any] | None = None,
                   ) -> None:
    """Records whose outbox is delivered stay in memory without it (a slice of the stored
    bytes, :func:`segmenter.records.without_outbox`): the changelog keeps the whole record and
    its partition's marker says the outbox was delivered, so recovery needs nothing more. One
    written again since, by a write not yet delivered, keeps its own.

    ``written``: (key, partition) of records stored with an outbox; ``delivered``: partition
    -> the highest delivered write; ``parsed``: the parsed records kept beside the store.

    >>> from features.profile import FeatureParams, UserFeatures
    >>> record = UserRecord(UserFeatures(FeatureParams()), outbox=['{"a":1}'], outbox_seq=3)
    >>> store = {b"u1": record.to_bytes(), b"u2": record.to_bytes()}
    >>> keep_delivered(store, [(b"u1", 0), (b"u2", 1)], {0: 3, 1: 2})
    >>> [UserRecord.from_bytes(store[key], FeatureParams()).outbox for key in (b"u1", b"u2")]
    [[], ['{"a":1}']]
    """
    for key, partition in written:
        value = store.get(key)
        if value is None:
            continue
        kept = without_outbox(value, delivered.get(partition, 0))
        if kept is not value:
            store[key] = kept
            if parsed is not None:
                parsed.rekey(key, value, kept)


class ChangeOutbox:
    """Orders the change events of every write after its records, and tracks delivery."""

    def __init__(self, producer: Callable[[], Any], changes_topic: str,
                 changelog_topic: Callable[[], str], store: Callable[[], Any]) -> None:
        """``producer``: the started aiokafka producer; ``changelog_topic`` and ``store``:
        the user table's changelog topic name and its key -> bytes store."""
        self.producer = producer
        self.changes_topic = changes_topic
        self.changelog_topic = changelog_topic
        self.store = store
        self.seq = 0
        #: Changelog partition -> the highest seq whose outboxes are known delivered.
        self.delivered: dict[int, int] = {}
        self._previous: asyncio.Future[None] | None = None
        self._partitions = 0
        #: seq -> the parked keys (with their partitions) to delete once its changes are out.
        self._parked: dict[int, list[tuple[int, bytes]]] = {}
        self._unparked: list[tuple[int, bytes]] = []

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def fill(self, record: UserRecord, partition: int, changes: list[bytes], seq: int) -> None:
        """Set the record's outbox for this write: what an earlier write left undelivered,
        then this write's changes."""
        undelivered = record.outbox if record.outbox_seq > self.delivered.get(partition, 0) else []
        record.outbox = [*undelivered, *(change.decode() for change in changes)]
        record.outbox_seq = seq if record.outbox else 0

    def park(self, partition: int, seq: int,
             changes: dict[str, list[bytes]]) -> tuple[bytes, bytes]:
        """The changelog record (key, value) that keeps deleted users' change events until
        this write's changes are delivered (then the key is deleted)."""
        key = parked_key(partition, seq)
        self._parked.setdefault(seq, []).append((partition, key))
        value = orjson.dumps({user: [change.decode() for change in values]
                              for user, values in changes.items()})
        return key, value

    def send_after(self, stored: list[Awaitable[Any]], changes: dict[str, list[bytes]],
                   seq: int, partition_of: Callable[[str], int]) -> asyncio.Future[None]:
        """Produce ``changes`` (user -> their change events' JSON) once ``stored`` (the
        records) and the previous write's changes are delivered; then mark the users'
        partitions delivered up to ``seq``."""
        return self._send_chained(stored, changes, seq, {partition_of(user) for user in changes})

    def _send_chained(self, stored: list[Awaitable[Any]], changes: dict[str, list[bytes]],
                      seq: int, partitions: Iterable[int]) -> asyncio.Future[None]:
        sending = asyncio.ensure_future(self._send(self._previous, stored, changes, seq,
                                                   partitions))
        self._previous = sending
        return sending

    async def _send(self, previous: asyncio.Future[None] | None,
                    stored: list[Awaitable[Any]], changes: dict[str, list[bytes]], seq: int,
                    partitions: Iterable[int]) -> None:
        if previous is not None:
            await previous
        await written(stored)
        producer = self.producer()
        if not self._partitions:
            self._partitions = len(await producer.partitions_for(self.changes_topic))
        batches = RecordBatches(producer)
        for user_id, values in changes.items():
            key = user_id.encode()
            partition = partition_of(key, self._partitions)
            for value in values:
                batches.add(self.changes_topic, partition, key, value)
        await written(await batches.send())
        markers = RecordBatches(producer)
        topic, store = self.changelog_topic(), self.store()
        for partition in partitions:
            self.delivered[partition] = seq
            key, value = marker_key(partition), b"%d" % seq
            store[key] = value
            markers.add(topic, partition, key, value)
        for partition, key in self._parked.pop(seq, []):
            store.pop(key, None)
            markers.add(topic, partition, key, None)
        await markers.send()  # delivery not awaited: a lost marker only re-sends outboxes

    def recovered(self, partitions: Iterable[int]) -> None:
        """Read the markers of newly assigned partitions; never number a write below them."""
        store = self.store()
        for partition in partitions:
            raw = store.get(marker_key(partition))
            self.delivered[partition] = max(self.delivered.get(partition, 0),
                                            int(raw) if raw else 0)
            self.seq = max(self.seq, self.delivered[partition])

    def undelivered(self, records: Iterable[tuple[str, UserRecord]],
                    partition_of: Callable[[str], int]) -> dict[str, list[bytes]]:
        """The outbox changes of recovered records newer than their partition's marker (the
        worker stopped before knowing them delivered), to publish again as they were."""
        again = {}
        for user_id, record in records:
            self.seq = max(self.seq, record.outbox_seq)
            if record.outbox and record.outbox_seq > self.delivered.get(
                    partition_of(user_id), 0):
                again[user_id] = [change.encode() for change in record.outbox]
        return again

    def unparked(self, keys: Iterable[bytes]) -> dict[str, list[bytes]]:
        """The parked exits (of deleted users) under ``keys`` newer than their partition's
        marker, to publish again before any outbox; every key is deleted once the next
        :meth:`republish` is delivered."""
        store, again = self.store(), {}
        for key in sorted(keys, key=parked_partition_seq):
            partition, seq = parked_partition_seq(key)
            self._unparked.append((partition, key))
            self.seq = max(self.seq, seq)
            if seq > self.delivered.get(partition, 0) and key in store:
                for user, values in orjson.loads(store[key]).items():
                    again.setdefault(user, []).extend(value.encode() for value in values)
        return again

    async def republish(self, changes: dict[str, list[bytes]],
                        partitions: Iterable[int]) -> None:
        """Send recovered outboxes again (in order with what follows) and mark ``partitions``
        (every one this worker owns) delivered once they are."""
        if changes:
            log.info("re-publishing the undelivered change events of %d users", len(changes))
        seq = self.next_seq()
        if self._unparked:
            self._parked[seq], self._unparked = self._unparked, []
        await self._send_chained([], changes, seq, partitions)
