"""The stream worker: Kafka topics -> batch processor -> Redis, change topic, dead letters.

Per-user state lives in a changelog-backed Faust table (``users``), so a restarted worker
recovers it. The hot path works a batch at a time: one pipeline to Redis, the batch's change
events sent together, one table write per touched user. Offsets are acknowledged only after
all of that is done, so a crash replays the batch; replay is harmless because duplicates are
dropped by event id, Redis writes are idempotent and change ids are deterministic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Coroutine
from typing import Any

from aiokafka.errors import ProducerClosed
from faust.exceptions import NotReady

from segmenter.behavior import BehaviorModel
from segmenter.engine import SegmentEngine, UserRecord
from segmenter.records import Placement
from segmenter.settings import Settings
from streams.runtime import metrics
from streams.runtime.app import create_app
from streams.runtime.batch import BatchProcessor
from streams.runtime.behavior_sync import ModelSync, read_latest_model
from streams.runtime.collector import COLLECTOR
from streams.runtime.health import WorkerHealth
from streams.runtime.inbox import BatchInbox
from streams.runtime.kafka_options import client_options
from streams.runtime.messages import BatchOutcome, Message
from streams.runtime.model_sweep import REVIEW_SLICE, ModelSweep, review_slice
from streams.runtime.partitioning import user_partition
from streams.runtime.publisher import OutcomePublisher
from streams.runtime.recovery import complete_changelog, restore_owned
from streams.runtime.segment_history import SegmentHistory
from streams.runtime.sinks.redis import RedisMembership
from streams.runtime.sinks.redis_rebuild import RedisRebuild
from streams.runtime.slices import MIN_BATCH, SLICE_S, give_turn, next_batch_limit, run_sliced
from streams.runtime.state.change_outbox import is_user_key
from streams.runtime.state.record_batches import written

log = logging.getLogger(__name__)

REVIEW_INTERVAL_S = 1.0
#: What writing raises once the worker's producer is closed or stopped (while it stops).
PRODUCER_GONE = (ProducerClosed, NotReady)
#: Batches written at once: a batch's change events wait for its records to be stored (see
#: streams.runtime.state.change_outbox), two round trips to the broker; with one batch in
#: flight the next batch waited for them.
WRITES_IN_FLIGHT = 4
#: How long the consume loop waits for input while unsettled users wait for their turn.
SETTLING_WAIT_S = 0.01
#: Time-driven work per review tick; what is left waits for the next tick.
REVIEW_BUDGET_S = 0.5


class SegmentWorker:
    """Wires the input topics to processing in a Faust app; ``app`` is what runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: The Kafka clients' connection options (security included), made once.
        self.kafka = client_options(settings.kafka)
        self.engine = SegmentEngine(settings, self.partition)
        topics = settings.kafka.topics
        self.processor = BatchProcessor(self.engine, topics, settings.worker.max_clock_skew_s)
        lag = settings.worker.quiet_clock_lag_minutes
        self.processor.quiet_after_s = settings.worker.quiet_after_s
        self.processor.quiet_lag_s = (self.engine.params.lateness_s if lag is None
                                      else 60 * lag)
        self.redis = RedisMembership(
            settings.redis.url, settings.redis.key_prefix, self.engine.catalogue(),
            self.engine.open_ended,
        )
        self.app = app = create_app(settings)
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        # The identity topic is partitioned like the inputs, so Faust assigns its partitions
        # with theirs: a handoff keyed by a user reaches the worker that owns the user.
        self.source = app.topic(*topics.inputs, topics.identity, topics.forget, **raw)
        self.changes = app.topic(topics.changes, **raw)
        self.deadletter = app.topic(topics.deadletter, **raw)
        self.users = app.Table(
            "users",
            partitions=settings.kafka.partitions,
            use_partitioner=True,
            # bytes in and out: the records are encoded with orjson by UserRecord itself.
            key_type=bytes,
            value_type=bytes,
        )
        self.publisher = OutcomePublisher(settings, app, self.engine, self.redis, self.users,
                                          self.partition)
        self.parsed = self.publisher.parsed
        self.rebuild = RedisRebuild(self.redis, self.partition)
        # The agent's batches and the review timer both touch user records: one at a time.
        self.lock = asyncio.Lock()
        #: Input partitions assigned to this worker (set after each rebalance).
        self.owned: set[int] = set()
        # A deep queue per partition: a partition whose queue runs dry while the broker has
        # more holds the others back (event-time alignment) until its next fetch arrives; at
        # one batch per partition the worker waited for input half the time (measured).
        self.inbox = BatchInbox(self.source.topics, max_messages=4 * settings.worker.batch_size,
                                partition_cap=8 * settings.worker.batch_size)
        app.use_inbox(self.inbox)
        app.topics.add(self.source)
        app.task(self.consume)
        self.health = WorkerHealth(settings.worker.stall_timeout_s)
        app.task(self._watch_loop)
        app.task(self._watch_progress)
        app.timer(REVIEW_INTERVAL_S, name="review")(self.review)
        app.timer(REVIEW_INTERVAL_S, name="redis_rebuild")(self.rebuild_redis)
        history = SegmentHistory(self.redis.client, settings.redis.key_prefix,
                                 settings.worker.history_interval_s,
                                 settings.worker.history_samples, lambda: self.health.ready)
        app.timer(REVIEW_INTERVAL_S, name="segment_history")(history.tick)
        self.users.on_recover(self.on_recovered)
        behavior = settings.segmentations.behavior
        self.sync = ModelSync(settings, self.apply_model) if behavior.enabled else None
        self._following: asyncio.Task[None] | None = None
        #: Users (keys) still to re-evaluate under the latest behaviour model version.
        self.sweep = ModelSweep(self.engine, self.processor, self.placed_owned)
        #: Users evaluated per slice of time-driven work (not itself sliced: sized to one
        #: SLICE_S; a user's evaluation costs several times that for a long history), at most
        #: REVIEW_SLICE.
        self.slice_limit = MIN_BATCH
        #: Users settled per batch of a coalescing backfill (see :meth:`_settle`).
        self.settle_limit = MIN_BATCH

    async def consume(self) -> None:
        """The hot path: take what the consumer fetched, process it as one batch, write it
        out, then acknowledge it (Faust commits acknowledged offsets).

        Batches overlap: while the broker takes up to :data:`WRITES_IN_FLIGHT` batches'
        records, the next is processed. Input is acknowledged only once its own batch is
        written (Faust commits only offsets acknowledged without a gap). Users a backfill
        folded in are settled a slice per turn once the backlog is read (:meth:`_settle`).
        """
        worker = self.settings.worker
        coalesce_after_s = self.coalesce_after_s
        writing: deque[asyncio.Future[None]] = deque()
        waited_since = time.perf_counter()
        limit = worker.batch_size
        while not self.app.should_stop:
            settling = self._may_settle()
            taken = await self.inbox.take(limit, SETTLING_WAIT_S if settling else 1.0,
                                          worker.batch_max_bytes)
            if taken:
                started = time.perf_counter()
                metrics.STAGE_SECONDS.labels("input").inc(started - waited_since)
                metrics.BATCH_SIZE.observe(len(taken))
                async with self.lock:
                    locked = time.perf_counter()
                    metrics.STAGE_SECONDS.labels("lock").inc(locked - started)
                    outcome = await self._process(taken, coalesce_after_s)
                    took = time.perf_counter() - locked
                    metrics.STAGE_SECONDS.labels("process").inc(took)
                    limit = next_batch_limit(limit, len(taken), took, worker.batch_size)
                    sent = await self.publish(outcome)
                    metrics.UNSETTLED_USERS.set(len(self.processor.unsettled))
                await _make_room(writing)
                writing.append(asyncio.ensure_future(self._acknowledge(sent, taken)))
                self.health.progressed()
            if self._may_settle():
                await _make_room(writing)
                writing.append(asyncio.ensure_future(await self._settle()))
            if not taken and not settling:  # a second without input
                COLLECTOR.idle()
            # Input waiting in the inbox and an uncontended lock do not suspend: without this,
            # a backlog's batches ran back to back, holding the loop for a third of a second.
            await give_turn()
            waited_since = time.perf_counter()
        for write in writing:
            await write

    async def _process(self, taken: list[Any], coalesce_after_s: float | None) -> BatchOutcome:
        """Process a batch a slice at a time, giving the loop its turn between slices (the
        lock stays held: no review or recovery sees a half-processed batch)."""
        return await run_sliced(self.processor.steps(map(_message, taken), self.load,
                                                     self.owns, coalesce_after_s, SLICE_S))

    @property
    def coalesce_after_s(self) -> float | None:
        """See :meth:`BatchProcessor.process` (None: every event's changes are emitted)."""
        worker = self.settings.worker
        return (60 * worker.backfill_after_minutes
                if worker.backfill_changes == "coalesce" else None)

    def _may_settle(self) -> bool:
        """Users wait unsettled, and the backlog that folded them in is read: the worker has
        caught up with the wall clock, or nothing waits in the inbox or on the broker."""
        return bool(self.processor.unsettled) and (
            not self.processor.catching_up(self.coalesce_after_s) or self._input_read())

    def _input_read(self) -> bool:
        """Nothing waits in the inbox or on the broker for this worker's input partitions."""
        # A partition whose end is not known yet (None) is not read.
        return not len(self.inbox) and all(
            waiting == 0 for _, waiting in self.app.input_backlog(self.inbox.topics))

    async def _settle(self) -> Coroutine[Any, Any, None]:
        """Evaluate a slice of the users a coalescing backfill folded in, and write them out;
        return what then waits for the writes."""
        async with self.lock:
            started = time.perf_counter()
            outcome = await run_sliced(self.processor.settle_steps(
                self.settle_limit, self.load_owned, SLICE_S))
            # Sized like a batch: each round of writing out costs about the same whatever
            # its size (measured: a backfill's settling took 12 s for 23,500 users).
            self.settle_limit = next_batch_limit(
                self.settle_limit, len(outcome.records), time.perf_counter() - started,
                self.settings.worker.batch_size)
            sent = await self.publish(outcome)
            metrics.UNSETTLED_USERS.set(len(self.processor.unsettled))
        self.health.progressed()
        return written(sent)

    async def _acknowledge(self, sent: list[Awaitable[Any]], taken: list[Any]) -> None:
        started = time.perf_counter()
        if not await self.finish(sent):  # stopping: not written, so not acknowledged
            return
        metrics.STAGE_SECONDS.labels("produce").inc(time.perf_counter() - started)
        consumer = self.app.consumer
        for message in taken:
            consumer.ack(message)

    def _size_slices(self, evaluated: int, took_s: float) -> None:
        # A slice of time-driven work is one step on the loop: it is sized to one SLICE_S.
        self.slice_limit = next_batch_limit(self.slice_limit, evaluated, took_s, REVIEW_SLICE,
                                            SLICE_S)

    async def review(self) -> None:
        """Time-driven work in slices of at most :attr:`slice_limit` users, each committed on
        its own, the loop free between them: due reviews, re-scoring, re-placing under a new
        model. A slice's writes are awaited without the lock, as a batch's are: waiting for
        the broker under it held the input's batches back (the consume loop waited 4.8 s for
        the lock in the single-event bench part)."""
        budget_ends = time.monotonic() + REVIEW_BUDGET_S
        sweep = self.settings.segmentations.behavior.sweep_per_second
        while time.monotonic() < budget_ends and not self.app.should_stop:
            async with self.lock:
                limit, started = self.slice_limit, time.perf_counter()
                outcome, reviewed, swept = review_slice(
                    self.processor, self.sweep, self.load_owned, limit, sweep,
                    self.inbox.caught_up, self.coalesce_after_s)
                self._size_slices(reviewed + swept, time.perf_counter() - started)
                metrics.USERS_REVIEWED.inc(reviewed)
                sweep -= swept
                sent = (await self.send(outcome)) if outcome.records or outcome.changes else []
            await self.finish(sent)
            if reviewed + swept < limit and not outcome.more:  # nothing more is due now
                return
            await give_turn()

    async def rebuild_redis(self) -> None:
        """Redis lost its data: write the owned users again
        (:mod:`streams.runtime.sinks.redis_rebuild`), in slices within the review budget."""
        if not self.health.ready:
            return
        await self.rebuild.check(self.owned, self.users.data.keys)
        budget_ends = time.monotonic() + REVIEW_BUDGET_S
        while self.rebuild.rebuilding and time.monotonic() < budget_ends:
            async with self.lock:
                await self.rebuild.step(self.load_owned)
            await give_turn()

    async def apply_model(self, model: BehaviorModel) -> None:
        """A new model version: predict with it, publish its profiles, queue the users to
        re-place and the customers to re-score by its shop-wide population (done in slices
        by :meth:`review`)."""
        async with self.lock:
            self.sweep.apply(model, lambda: filter(is_user_key, self.users.data.keys()))
            await self._publish_profiles(model)
        metrics.MODEL_VERSION.set(model.version)
        log.info("model version %d: re-placing %d users", model.version, len(self.sweep))

    async def on_recovered(self) -> None:
        """After each rebalance: finish the table, then schedule the users this worker owns
        (:mod:`streams.runtime.recovery`, in slices)."""
        inputs = self.settings.kafka.topics.inputs
        self.owned = {tp.partition for tp in self.app.assignor.assigned_actives()
                      if tp.topic in inputs}
        self.rebuild.forget(set(range(self.settings.kafka.partitions)) - self.owned)
        async with self.lock:
            self.parsed.clear()  # the table is being restored: its bytes objects are new
            self.processor.unsettled.clear()  # the owned ones are found again by the restore
            await complete_changelog(self.kafka, self.users, self.owned)
            await self._load_model()
            recovered = await restore_owned(self)
            metrics.UNSETTLED_USERS.set(len(self.processor.unsettled))
            # Start and restore made objects by the hundred thousand: collect and freeze them
            # now, while no input waits on this worker, rather than in its first batches.
            COLLECTOR.full()
        self.health.recovered()
        log.info("recovered %d users (consumer: %s)", recovered,
                 self.app.consumer_state(self.inbox))

    async def _load_model(self) -> None:
        """Predict with the latest behaviour model before any event (a restart changes no one),
        follow its versions, and train while this worker owns input partition 0."""
        behavior = self.engine.behavior
        if self.sync is None or behavior is None:
            return
        if behavior.model is None:
            model = await read_latest_model(self.kafka,
                                            self.settings.kafka.topics.behavior_model)
            if model is not None:
                self.engine.use_model(model)
                self.sync.model = model
                if model.population is not None:
                    self.engine.population.use_shared(model.population)
                await self._publish_profiles(model)
                metrics.MODEL_VERSION.set(model.version)
        if self._following is None:
            self._following = asyncio.ensure_future(self.sync.follow())
        self.sync.lead(0 in self.owned)

    async def _publish_profiles(self, model: BehaviorModel) -> None:
        profiles = {segment: {**profile, "model_version": model.version}
                    for segment, profile in model.profiles.items()}
        metrics.record_sizes(await self.redis.replace_profiles("behavior", profiles))

    async def _watch_loop(self) -> None:
        await self.health.watch_loop(lambda: self.app.should_stop)

    async def _watch_progress(self) -> None:
        # Messages fetched into the inbox but never taken wait too: a consume loop stuck
        # on something else leaves the broker's backlog at zero.
        await self.health.watch_progress(
            lambda: [*self.app.input_backlog(self.inbox.topics), ("inbox", len(self.inbox))],
            lambda: self.app.should_stop,
            other_loops=lambda: [self.app.consumer._thread.thread_loop],
            reread=self.app.consumer.perform_seek,
            describe=lambda: self.app.consumer_state(self.inbox))

    def partition(self, user_id: str) -> int:
        """The user's input partition (Kafka's default partitioner, keyed by user id)."""
        return user_partition(user_id, self.settings.kafka.partitions)

    def owns(self, user_id: str) -> bool:
        """Whether the user's partition is assigned here."""
        return self.partition(user_id) in self.owned

    def placed_owned(self, user_id: str) -> Placement | None:
        """Where a stored user this worker owns is placed, without parsing their record."""
        stored = self.users.get(user_id.encode()) if self.owns(user_id) else None
        return None if stored is None else Placement.of(stored)

    def load_owned(self, user_id: str) -> UserRecord | None:
        """A user's record, unless a rebalance gave their partition to another worker."""
        return self.load(user_id) if self.owns(user_id) else None

    def load(self, user_id: str) -> UserRecord | None:
        key = user_id.encode()
        stored = self.users.get(key)
        if stored is None:
            return None
        return self.parsed.take(key, stored) or self.engine.load_record(stored)

    async def commit(self, outcome: BatchOutcome) -> None:
        """Publish a batch's results; returns once everything is written."""
        await self.finish(await self.send(outcome))

    async def send(self, outcome: BatchOutcome) -> list[Awaitable[Any]]:
        """:meth:`publish`; what then waits for the broker. While the worker stops, a
        producer already closed (or stopped: Faust's NotReady) drops them: what was not stored
        the next life derives again from the stored state, and a stored record's change
        events wait in its outbox, which recovery publishes."""
        try:
            return await self.publish(outcome)
        except PRODUCER_GONE:
            if not self.app.should_stop:
                raise
            return []

    async def finish(self, sent: list[Awaitable[Any]]) -> bool:
        """Wait for :meth:`send`'s writes; False if the stopping worker's producer refused
        them (see :meth:`send`)."""
        try:
            await written(sent)
        except PRODUCER_GONE:
            if not self.app.should_stop:
                raise
            return False
        return True

    async def publish(self, outcome: BatchOutcome) -> list[Awaitable[Any]]:
        return await self.publisher.publish(outcome, self.processor.watermark)


async def _make_room(writing: deque[asyncio.Future[None]]) -> None:
    """Wait until fewer than :data:`WRITES_IN_FLIGHT` batches are being written (oldest first,
    so that memory held by batches in flight stays bounded)."""
    while writing and (writing[0].done() or len(writing) >= WRITES_IN_FLIGHT):
        await writing.popleft()


def _message(message: Any) -> Message:
    return Message(message.topic, message.partition, message.offset, message.key,
                   message.value, message.timestamp)
