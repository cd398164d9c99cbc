"""The Faust app class, with two changes: fetches wait less, and input arrives in batches.

Batches: messages of the topics of ``app.inbox`` (:mod:`streams.runtime.inbox`) are handed over
a fetch at a time instead of one by one through an agent; every other topic goes Faust's usual way.

Faust creates its consumer with ``fetch_max_wait_ms=1500``. Apache Kafka answers a waiting
fetch as soon as data arrives, so that value only bounds idle polls; Tansu (the embedded broker)
holds every fetch that finds no data for the full wait, which would add up to 1.5 s to each
event's latency. A short wait costs a few idle requests per second on Kafka and keeps latency
low on both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiokafka
import faust
from aiokafka.errors import ConsumerStoppedError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode import Service

from segmenter.settings import Settings
from streams.runtime.inbox import BatchInbox
from streams.runtime.kafka_options import faust_credentials, request_timeout_s

#: Records of one partition handed over per turn of the consumer's fetch loop.
PARTITION_RECORDS = 500
#: Records tracked between turns of the event loop while a fetch is handed over (a turn holds
#: every partition's share: tracking 2,000 records of each of 12 held the loop for 0.4 s).
YIELD_EVERY = 1000


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka has no public setter; the value is read when the consumer starts.
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        return consumer

    async def _fetch_records(self, consumer: aiokafka.AIOKafkaConsumer,
                             active_partitions: set[Any], timeout: float | None = None,
                             max_records: int | None = None) -> dict[Any, list[Any]]:
        """What Faust's fetch loop gets: at most PARTITION_RECORDS of each partition's
        prefetched records per call, from every partition that has some.

        aiokafka prefetches about 1 MB per partition and, asked for everything, turns all of
        it into record objects in one step (a backlog's fetch held the loop for 0.6 s); asked
        for N records, it takes them all from the first partition it holds, and the inbox,
        seeing one partition at a time, can not align them by event time.
        """
        if not self.consumer.flow_active:
            return {}
        fetcher = consumer._fetcher
        if consumer._closed or fetcher._closed:
            raise ConsumerStoppedError()
        # A copy: the worker's thread pauses and resumes partitions while this one awaits.
        partitions = set(active_partitions)
        with fetcher._subscriptions.fetch_context():
            records = await fetcher.fetched_records(
                partitions, timeout=timeout, max_records=PARTITION_RECORDS)
            for tp in partitions:
                if tp not in records:
                    records.update(await fetcher.fetched_records(
                        {tp}, timeout=0, max_records=PARTITION_RECORDS))
            return records

    async def seek_to_committed(self) -> Mapping[Any, int | None]:
        """Seek every assigned partition to its committed offset, and each input partition
        nothing was committed in yet to its beginning (what ``auto_offset_reset`` does).

        aiokafka's own seek leaves a partition without a committed offset where the consumer
        is. Records Faust fetched there and then dropped (it does so for a partition it paused
        for recovery meanwhile, as it does at every start) were then never fetched again: a
        worker restarted before its first commit waited for them until it exited as stalled.
        """
        return await self.call_thread(self._seek_to_committed_or_beginning)

    async def _seek_to_committed_or_beginning(self) -> Mapping[Any, int | None]:
        consumer = self._ensure_consumer()
        committed = await consumer.seek_to_committed()
        changelogs = self.app.tables.changelog_topics
        uncommitted = [tp for tp, offset in committed.items()
                       if not offset and tp.topic not in changelogs]
        if uncommitted:
            await consumer.seek_to_beginning(*uncommitted)
        return committed


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Service) -> None:  # pragma: no cover
        """Faust's fetch loop (read offsets, gaps, flow control), with the inbox's topics
        handed over a fetch at a time."""
        inbox: BatchInbox | None = self.app.inbox
        if inbox is None:
            return await super()._drain_messages(fetcher)
        stopped, fetcher_stopped = self._stopped.is_set, fetcher._stopped.is_set
        read_offset = self._read_offset
        while not (stopped() or fetcher_stopped()):
            batch = []
            await asyncio.sleep(0)
            seen = 0
            async for tp, message in self.getmany(timeout=1.0):
                seen += 1
                if seen % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a turn of the loop per YIELD_EVERY records
                previous = read_offset[tp]
                if previous is not None and message.offset < previous:
                    continue  # read again after a seek: already handed over
                if previous and message.offset - previous > 1 and (
                        self.app.topics.acks_enabled_for(message.topic)):
                    await self._add_gap(tp, previous + 1, message.offset)
                if message.topic in inbox.topics:
                    self.track_message(message)
                    batch.append(message)
                else:
                    await self.wait_first(self.callback(message), self.suspend_flow.wait())
                read_offset[tp] = message.offset
            if batch:
                await self.wait_first(inbox.put(batch), self.suspend_flow.wait())


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class SegmenterApp(faust.App):
    """A faust.App whose stream consumer waits at most ``fetch_max_wait_ms`` per fetch."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 100, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        #: Where the input topics' messages go, a fetch at a time (None: Faust's usual way).
        self.inbox: BatchInbox | None = None

    def use_inbox(self, inbox: BatchInbox) -> None:
        """Hand ``inbox.topics`` over in batches; the inbox is cleared on every rebalance."""
        self.inbox = inbox
        inbox.on_drop = lambda message: self.consumer._unacked_messages.discard(message)
        inbox.partitions.assigned = lambda: [tp for tp in self.consumer.assignment()
                                             if tp.topic in inbox.topics]
        inbox.partitions.has_more = self._has_more
        # Faust's own partition type: its set of active partitions accepts no other.
        inbox.partitions.pause = lambda tp: self.consumer.on_buffer_full(TP(*tp))
        inbox.partitions.resume = lambda tp: self.consumer.on_buffer_drop(TP(*tp))
        self._inbox_flow = _InboxFlow(inbox, self)  # the flow control holds it weakly
        self.flow_control.manage_queue(self._inbox_flow)  # type: ignore[arg-type]

    def _has_more(self, tp: Any, last_offset: int | None) -> bool:
        """Whether the broker holds input past ``last_offset`` (unknown counts as yes; a
        partition no longer assigned here, no: aiokafka refuses to look at one)."""
        if tp not in self.consumer.assignment():
            return False
        highwater = self.consumer.highwater(tp)
        if highwater is None:
            return True
        if last_offset is None:
            return highwater > (self.consumer._committed_offset.get(tp) or 0)
        return highwater > last_offset + 1

    def consumer_state(self, inbox: BatchInbox) -> str:
        """What decides whether input is fetched, for a stall's log: Faust's flow and how
        many of the assigned partitions Faust fetches, paused and buffered, how many the
        inbox paused, and how many aiokafka holds paused."""
        consumer = self.consumer
        client = getattr(consumer._thread, "_consumer", None)

        def count(tps: Any) -> str:
            return "?" if tps is None else str(len(tps))

        return (f"flow_active={consumer.flow_active} in_recovery={self.in_recovery} "
                f"assigned={len(consumer.assignment())} "
                f"active={count(consumer._active_partitions)} "
                f"paused={count(consumer._paused_partitions)} "
                f"buffered={count(consumer._buffered_partitions)} "
                f"inbox_paused={count(inbox.paused)} aiokafka_paused="
                f"{count(client._subscription.paused_partitions() if client else None)}"
                + _behind(consumer, client, inbox.topics))

    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self)

    def input_backlog(self, topics: frozenset[str]) -> list[tuple[Any, int | None]]:
        """Messages waiting per assigned partition of ``topics`` (None: not known yet).

        A partition nothing was read from or committed in has all of it waiting (an empty
        one, nothing): the identity and forget topics are mostly empty."""
        consumer = self.consumer
        waiting: list[tuple[Any, int | None]] = []
        for tp in consumer.assignment():
            if tp.topic not in topics:
                continue
            highwater = consumer.highwater(tp)
            waiting.append((tp, None if highwater is None
                            else max(0, highwater - _last_read(consumer, tp) - 1)))
        return waiting


def _last_read(consumer: Any, tp: Any) -> int:
    """The last offset of ``tp`` Faust handed over, or the one before the committed offset
    (-1: nothing read or committed)."""
    read = consumer._read_offset.get(tp)
    if read is None:
        read = (consumer._committed_offset.get(tp) or 0) - 1
    return int(read)


class _InboxFlow:
    """The inbox as Faust's flow control sees it: a queue it clears when a rebalance revokes
    partitions (the flow suspended) and again when recovery resumes the flow.

    Recovery resumes the partitions and seeks them to the committed offsets before it resumes
    the flow; what was fetched meanwhile is past Faust's read offsets, and dropped unread it
    was never fetched again: the worker went on with its input silently short (seen once a
    worker's start took longer to seek). Those partitions are read again from there.
    """

    def __init__(self, inbox: BatchInbox, app: SegmenterApp) -> None:
        self.inbox = inbox
        self.app = app
        self.seeking: asyncio.Future[None] | None = None

    def clear(self) -> None:
        dropped = self.inbox.clear()
        if not dropped or not self.app.flow_control.is_active():
            return  # a rebalance: recovery then seeks every partition to its committed offset
        consumer = self.app.consumer
        assigned = consumer.assignment()
        # Not before the committed offset: a fetch from before recovery's seek may be older.
        again = {tp: max(offset, consumer._committed_offset.get(tp) or 0)
                 for tp, offset in dropped.items() if tp in assigned}
        if again:
            self.seeking = asyncio.ensure_future(consumer.seek_wait(again))


def _behind(consumer: Any, client: Any, topics: frozenset[str], limit: int = 8) -> str:
    """Input partitions not read to the broker's end: where aiokafka fetches from, the last
    offset Faust handed over and the committed one (counts alone did not show a partition
    whose position had passed records that were dropped unread)."""
    subscription = getattr(client, "_subscription", None)
    assignment = getattr(subscription.subscription, "assignment", None) if subscription else None
    behind = []
    for tp in sorted(assignment.tps if assignment else ()):
        if tp.topic not in topics:
            continue
        state, highwater = assignment.state_value(tp), consumer.highwater(tp)
        if (state.has_valid_position and highwater is not None
                and _last_read(consumer, tp) + 1 >= highwater):
            continue
        handed, committed = consumer._read_offset.get(tp), consumer._committed_offset.get(tp)
        position = state.position if state.has_valid_position else "reset"
        behind.append(f"{tp.topic}/{tp.partition} fetching at {position} of {highwater}, "
                      f"handed over {handed}, committed {committed}")
    return f"; behind: {'; '.join(behind[:limit])}" if behind else ""


def faust_broker_url(bootstrap: str) -> str:
    """'h1:9092,h2:9092' -> 'kafka://h1:9092;h2:9092' (Faust's form)."""
    return "kafka://" + ";".join(bootstrap.split(","))


def create_app(settings: Settings) -> SegmenterApp:
    session = settings.kafka.session_timeout_s
    return SegmenterApp(
        settings.app_id,
        fetch_max_wait_ms=settings.kafka.fetch_max_wait_ms,
        broker=faust_broker_url(settings.kafka.bootstrap),
        broker_credentials=faust_credentials(settings.kafka),
        store="memory://",
        datadir=str(settings.worker.data_dir / settings.app_id),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        topic_disable_leader=True,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session,
        broker_request_timeout=request_timeout_s(settings.kafka),
        broker_rebalance_timeout=session,
        broker_heartbeat_interval=max(0.5, session / 10),
        producer_linger=0.005,
    )
