"""One batch of input messages -> updated user records, segment changes and dead letters.

No I/O here: the worker hands in the messages and a way to load a user's stored record, and
writes out what comes back. That keeps the hot path a plain loop over a batch.
"""

from __future__ import annotations

import math
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Generator, Iterable

from features.events import ShopEvent
from segmenter.engine import SegmentChange, SegmentEngine, UserRecord
from segmenter.schedule import ReviewSchedule
from segmenter.settings import Topics
from streams.runtime.admission import Admission
from streams.runtime.forget import apply_forget
from streams.runtime.identity import claim, handoff_in
from streams.runtime.messages import BatchOutcome, DeadLetter, LoadRecord, Message
from streams.runtime.slices import SliceTimer, run_through

#: A topic that delivered nothing in this many of the worker's batches no longer holds its
#: task's event time back. Counted in batches, not seconds: settling a backfill's users or a
#: long review pauses every topic at once, and a wall-clock rule would then let the first topic
#: back set the time.
IDLE_TOPIC_BATCHES = 20
#: Messages produced within this long count towards the produce -> Redis latency metric.
LIVE_S = 3600.0

Owns = Callable[[str], bool]


class BatchProcessor:
    """Decodes, groups by user, runs the engine, and keeps the time-driven review schedule."""

    def __init__(self, engine: SegmentEngine, topics: Topics, max_clock_skew_s: float) -> None:
        self.engine = engine
        self.admission = Admission(topics, engine.currencies, max_clock_skew_s)
        #: The event time the stream has reached (see :meth:`_advance`).
        self.watermark = 0.0
        self.schedule = ReviewSchedule()
        #: Per input partition number (a task, as Kafka Streams calls the partitions of the
        #: co-partitioned inputs that one user's events go to): its event time.
        self.task_time: dict[int, float] = {}
        #: Per (topic, partition): its latest event time, and the batch it last delivered in.
        self.topic_time: dict[tuple[str, int], float] = {}
        self.topic_seen_at: dict[tuple[str, int], int] = {}
        #: Batches processed so far: the clock that topic idleness is counted on.
        self.batches = 0
        #: Users to re-score (F or M may have moved), as an ordered set.
        self.rescore_pending: dict[str, None] = {}
        #: While catching up: users whose events are folded in and stored but not yet
        #: evaluated (``record.unsettled``), as an ordered set (see :meth:`settle`).
        self.unsettled: dict[str, None] = {}
        #: Quiet time (see :meth:`follow_wall_clock`): after this long without input the
        #: clock follows the wall clock less ``quiet_lag_s`` (None: never).
        self.quiet_after_s: float | None = None
        self.quiet_lag_s = 0.0
        self.input_at = time.monotonic()

    def process(self, messages: Iterable[Message], load: LoadRecord,
                owns: Owns = lambda user_id: True,
                coalesce_after_s: float | None = None) -> BatchOutcome:
        """:meth:`steps` in one go (tools and tests; the worker gives the loop its turns)."""
        return run_through(self.steps(messages, load, owns, coalesce_after_s))

    def steps(self, messages: Iterable[Message], load: LoadRecord,
              owns: Owns = lambda user_id: True, coalesce_after_s: float | None = None,
              slice_s: float = math.inf) -> Generator[None, None, BatchOutcome]:
        """Process a batch, pausing (a bare ``yield``) once ``slice_s`` has passed since the
        last pause, between two users: a large batch amortises more per user (a user with
        several events of the batch is evaluated once), and the worker's loop still gets its
        turn every slice. Returns the batch's outcome.

        ``owns``: whether a user's partition is this worker's (else a login's visitor is
        claimed from the worker that owns them, over the identity topic).

        ``coalesce_after_s``: while the stream's event time is more than this behind the wall
        clock (catching up on a backlog), users' events are only folded in and their records
        stored, marked unsettled; they are evaluated, once each, by :meth:`settle` once the
        backlog is read (logins are evaluated at once)."""
        outcome, slices = BatchOutcome(), SliceTimer(slice_s)
        decoded, handoffs, forgets = yield from self.admission.sort(
            messages, outcome.dead_letters, slices)
        if decoded:
            self.input_at = time.monotonic()
        lateness = self.engine.params.lateness_s
        horizons = {task: at - lateness for task, at in self.task_time.items()}
        decoded = self._on_time(decoded, outcome)
        defer = self.catching_up(coalesce_after_s)
        by_user, origin = _by_user(decoded, outcome)
        for message in handoffs:  # each evaluates a user: the loop gets its turn between
            yield from slices.turn()
            handoff_in(self.engine, message, load, outcome, self.watermark, self._keep)
        too_late: list[ShopEvent] = []
        logins = _logins(by_user)
        # Visitors first, so a visitor's events of this batch are in place before a login
        # merges them into the customer.
        for user_id in sorted(by_user, key=lambda user: user in logins):
            yield from slices.turn()
            events = by_user[user_id]
            horizon = horizons.get(origin[id(events[0])].partition, -math.inf)
            kept = self._held(user_id, outcome)
            changes_before = len(outcome.changes)
            try:
                self._apply(user_id, events, logins.get(user_id, {}), load, owns, outcome,
                            too_late, horizon, defer and user_id not in logins)
            except Exception as exc:  # one user's failure is theirs alone
                del outcome.changes[changes_before:]
                self._isolate(user_id, events, origin, kept, exc, outcome)
        for message in forgets:  # after their events of this batch
            yield from slices.turn()
            forgotten = apply_forget(self.engine, message, load, outcome, time.time())
            if forgotten is not None:
                self._keep(*forgotten, outcome)
        if defer:  # not in Redis yet: no produce -> Redis latency to count
            outcome.deferred = True
            outcome.produced_at.clear()
        for event in too_late:  # cannot happen: checked on arrival, against these horizons
            outcome.events_by_topic[origin[id(event)].topic] -= 1
            outcome.dead_letters.append(DeadLetter(
                origin[id(event)], "too_late", f"ts {event.ts:.0f} is before the horizon"))
        return outcome

    def catching_up(self, coalesce_after_s: float | None) -> bool:
        """Coalescing, and the stream's event time more than that behind the wall clock."""
        return (coalesce_after_s is not None
                and self.watermark < time.time() - coalesce_after_s)

    def _apply(self, user_id: str, events: list[ShopEvent], logins: dict[str, ShopEvent],
               load: LoadRecord, owns: Owns, outcome: BatchOutcome, too_late: list[ShopEvent],
               horizon: float, defer: bool) -> None:
        """One user's events of the batch: merge visitors they logged in as, then fold the
        events in (``defer``) or evaluate them."""
        record = outcome.records.get(user_id) or load(user_id) or self.engine.new_record()
        for visitor_id, event in logins.items():
            if visitor_id in record.absorbed:
                continue
            if owns(visitor_id):
                self._merge(user_id, record, visitor_id, event, load, outcome)
            elif visitor_id not in record.claimed:
                record.remember(record.claimed, visitor_id)
                outcome.handoffs.append(claim(visitor_id, user_id, event))
        if defer:
            if self.engine.defer(record, events, too_late, horizon):
                self.unsettled[user_id] = None
                outcome.records[user_id] = record  # stored as it is: not scheduled yet
            return
        outcome.changes += self.engine.learn(
            user_id, record, events, self.watermark, too_late, horizon)
        self._keep(user_id, record, outcome)

    def _held(self, user_id: str, outcome: BatchOutcome) -> bytes | None:
        """A copy of the user's record if this batch already changed it (not yet written),
        to put back should applying their events fail; a stored one is simply not replaced."""
        record = outcome.records.get(user_id)
        return None if record is None else record.to_bytes()

    def _isolate(self, user_id: str, events: list[ShopEvent], origin: dict[int, Message],
                 kept: bytes | None, exc: Exception, outcome: BatchOutcome) -> None:
        """Applying a user's events raised: their record stays as it was, their messages go
        to the dead-letter topic with the reason, and the rest of the batch proceeds."""
        outcome.records.pop(user_id, None)
        if kept is not None:
            outcome.records[user_id] = self.engine.load_record(kept)
        detail = _failure(f"applying user {user_id}'s events", exc,
                          "their record is left as it was")
        outcome.failures.append(detail)
        messages: dict[int, Message] = {}
        for event in events:
            message = origin[id(event)]
            messages[id(message)] = message
            outcome.events_by_topic[message.topic] -= 1
        outcome.dead_letters += [DeadLetter(m, "apply_failed", detail) for m in messages.values()]

    def settle(self, limit: int, load: LoadRecord) -> BatchOutcome:
        """:meth:`settle_steps` in one go."""
        return run_through(self.settle_steps(limit, load))

    def settle_steps(self, limit: int, load: LoadRecord, slice_s: float = math.inf
                     ) -> Generator[None, None, BatchOutcome]:
        """Evaluate up to ``limit`` unsettled users, each once at the stream's event time:
        their change events go from what was last published to the state their backlog
        reached. A user no longer here (``load`` gives None), or evaluated meanwhile (a login,
        a model sweep), is passed over. Pauses like :meth:`steps`."""
        outcome, slices = BatchOutcome(), SliceTimer(slice_s)
        for _ in range(min(limit, len(self.unsettled))):
            yield from slices.turn()
            # popitem, not the first item: a dict's head is found by scanning past the slots
            # of the items already taken, which made settling a backlog quadratic.
            user_id, _ = self.unsettled.popitem()
            record = load(user_id)
            if record is None or record.unsettled is None:
                continue
            try:
                outcome.changes += self.engine.settle_unsettled(user_id, record, self.watermark)
            except Exception as exc:  # the stored record stays: folded in, not evaluated
                outcome.failures.append(_failure(f"evaluating user {user_id}", exc,
                                                 "their events are kept, not evaluated"))
                continue
            self._keep(user_id, record, outcome)
        return outcome

    def _on_time(self, decoded: list[tuple[ShopEvent, Message]],
                 outcome: BatchOutcome) -> list[tuple[ShopEvent, Message]]:
        """In arrival order (event-time order across partitions, see :mod:`streams.runtime.inbox`):
        dead-letter each event older than its task's event time at its arrival less the
        allowed lateness, and move the task's event time on.

        A task is one partition number of the input topics: all of one user's events go to
        it. Its event time is the earliest of its topics' latest event times, over the topics
        that delivered within the last :data:`IDLE_TOPIC_BATCHES` batches, so that a topic
        running ahead in a backlog does not make the others' events late while a quiet topic
        does not hold time back. The worker's watermark, which drives time-driven reviews, is
        the latest of its tasks' event times.
        """
        lateness = self.engine.params.lateness_s
        self.batches += 1
        batch = self.batches
        on_time = []
        for event, message in decoded:
            if event.kind == "profile":  # traits: the latest wins whenever it comes
                on_time.append((event, message))
                continue
            task = message.partition
            reached = self.task_time.get(task, -math.inf)
            if event.ts < reached - lateness:
                detail = (f"ts {event.ts:.0f} is over {lateness:.0f}s before the stream's "
                          f"event time {reached:.0f} (partition {task})")
                outcome.dead_letters.append(DeadLetter(message, "too_late", detail))
                continue
            on_time.append((event, message))
            key = (message.topic, task)
            self.topic_seen_at[key] = batch
            if event.ts > self.topic_time.get(key, -math.inf):
                self.topic_time[key] = event.ts
                self._advance(task, batch)
        return on_time

    def advance_idle(self, caught_up: Callable[[str, int], bool]) -> None:
        """A task whose every topic is caught up (``caught_up(topic, partition)``: nothing
        waits for it here or on the broker) moves on to the latest event time of any of them:
        with the input all read, no earlier event can still come. Called on review ticks."""
        for task in list(self.task_time):
            keys = [key for key in self.topic_time if key[1] == task]
            if all(caught_up(*key) for key in keys):
                reached = max(self.topic_time[key] for key in keys)
                self.task_time[task] = max(self.task_time[task], reached)
                self.watermark = max(self.watermark, reached)

    def follow_wall_clock(self, caught_up: Callable[[str, int], bool],
                          now: float | None = None) -> None:
        """Quiet time: with every input read and no event for ``quiet_after_s``, the stream's
        clock (which drives time-driven reviews) follows the wall clock less ``quiet_lag_s``,
        so customers lapse on schedule through a night without events. Only the review clock
        moves: an event that then arrives is judged late against its own partition's time."""
        if self.quiet_after_s is None or not self.task_time:
            return
        if time.monotonic() - self.input_at < self.quiet_after_s:
            return
        if all(caught_up(*key) for key in self.topic_time):
            wall = time.time() if now is None else now
            self.watermark = max(self.watermark, wall - self.quiet_lag_s)

    def _advance(self, task: int, batch: int) -> None:
        times = [(at, self.topic_seen_at[key]) for key, at in self.topic_time.items()
                 if key[1] == task]
        reached = min(at for at, seen in times if batch - seen <= IDLE_TOPIC_BATCHES)
        self.task_time[task] = max(self.task_time.get(task, -math.inf), reached)
        self.watermark = max(self.watermark, self.task_time[task])

    def _merge(self, user_id: str, record: UserRecord, visitor_id: str, event: ShopEvent,
               load: LoadRecord, outcome: BatchOutcome) -> None:
        visitor = outcome.records.get(visitor_id) or load(visitor_id)
        if visitor is None or visitor_id in outcome.deleted:
            return
        outcome.changes += self.engine.merge(
            user_id, record, visitor_id, visitor, event.ts, f"merge:{event.event_id}")
        self._keep(visitor_id, visitor, outcome)
        outcome.deleted.add(visitor_id)

    def review(self, load: LoadRecord, limit: int,
               caught_up: Callable[[str, int], bool] = lambda topic, partition: True,
               coalesce_after_s: float | None = None) -> BatchOutcome:
        """Re-evaluate up to ``limit`` users: first those time has moved, then those whom the
        population's quantiles moved. The rest wait for the next call, so each call is a
        bounded slice of work however many users are due. ``caught_up``: see
        :meth:`advance_idle`.

        Not while a coalescing backfill catches up with input still waiting: the population
        and the event time move on every batch then, so these changes would be superseded
        within the backlog (the very transitions coalescing exists not to emit); the users stay
        due and queued. Once every input partition is read, a stream that is still behind the
        wall clock (old history, a quiet shop) is reviewed as usual."""
        outcome = BatchOutcome()
        self.advance_idle(caught_up)
        self.follow_wall_clock(caught_up)
        read = all(caught_up(*key) for key in self.topic_time)
        if self.catching_up(coalesce_after_s) and not read:
            return outcome  # a backlog still waits: what it brings would supersede these
        due = self.schedule.pop_due(self.watermark, limit)
        outcome.more = self.schedule.due_by(self.watermark)  # it stopped at its bound
        for user_id in due:
            record = load(user_id)
            if record is not None:  # else the user's partition moved to another worker
                self._reevaluate(user_id, record, self.engine.review, outcome)
        self.queue_rescore(self.engine.refresh_population(force=False))
        while self.rescore_pending and len(outcome.records) < limit:
            user_id, _ = self.rescore_pending.popitem()  # see settle: never the head
            record = outcome.records.get(user_id) or load(user_id)
            if record is not None:
                self._reevaluate(user_id, record, self.engine.rescore, outcome)
        return outcome

    def _reevaluate(self, user_id: str, record: UserRecord,
                    evaluate: Callable[[str, UserRecord, float], list[SegmentChange]],
                    outcome: BatchOutcome) -> None:
        try:
            outcome.changes += evaluate(user_id, record, self.watermark)
        except Exception as exc:  # the stored record stays as it was
            outcome.failures.append(_failure(f"re-evaluating user {user_id}", exc,
                                             "their record is left as it was"))
            return
        self._keep(user_id, record, outcome)

    def queue_rescore(self, users: Iterable[str]) -> None:
        """Users whose F or M score may have moved: re-scored by the next reviews."""
        self.rescore_pending.update(dict.fromkeys(users))

    def adopt(self, records: Iterable[tuple[str, UserRecord]]) -> None:
        """Count stored users in the population and the watermark (after a recovery; all of
        them before any :meth:`restore`)."""
        for user_id, record in records:
            self.engine.adopt(user_id, record)
            self.watermark = max(self.watermark, record.features.last_seen)

    def restore(self, records: Iterable[tuple[str, UserRecord]],
                rescored: set[str]) -> BatchOutcome:
        """Schedule adopted users' reviews; re-evaluate those whom the settings or the
        population's quantiles (``rescored``) moved. A backfill's unsettled users (never
        evaluated, or last evaluated with these settings) wait to be settled: their change
        events keep the cause of the events folded in."""
        outcome = BatchOutcome()
        fingerprint = self.engine.fingerprint
        for user_id, record in records:
            if record.unsettled is not None and record.evaluated_with in ("", fingerprint):
                self.unsettled[user_id] = None
                continue
            if record.evaluated_with != fingerprint:
                outcome.changes += self.engine.reconfigure(user_id, record, self.watermark)
            elif user_id in rescored:
                outcome.changes += self.engine.rescore(user_id, record, self.watermark)
            else:
                self.schedule.schedule(user_id, record.review_at)
                continue
            self._keep(user_id, record, outcome)
        return outcome

    def _keep(self, user_id: str, record: UserRecord, outcome: BatchOutcome) -> None:
        """The user's evaluated record is to be written (every path here evaluates)."""
        outcome.records[user_id] = record
        self.schedule.schedule(user_id, record.review_at)


def _failure(what: str, exc: Exception, consequence: str) -> str:
    """What raised, where, and what became of the user (for the log and a dead letter)."""
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return (f"{what} raised {type(exc).__name__}: {exc} (at "
            f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} in {frame.name}); "
            f"{consequence}")


def _by_user(decoded: list[tuple[ShopEvent, Message]], outcome: BatchOutcome
             ) -> tuple[dict[str, list[ShopEvent]], dict[int, Message]]:
    """The batch's events per user, in event-time order across the topics (so that each
    user's events are folded in the order they happened whichever topic brought them), and
    each event's message; counts them in ``outcome``."""
    decoded.sort(key=lambda pair: pair[0].ts)
    by_user: dict[str, list[ShopEvent]] = defaultdict(list)
    origin: dict[int, Message] = {}
    live_after = time.time() - LIVE_S
    for event, message in decoded:
        origin[id(event)] = message
        user_id = event.entity_id
        if message.key is not None and message.key != user_id.encode():
            outcome.misrouted += 1
        by_user[user_id].append(event)
        outcome.events_by_topic[message.topic] += 1
        if message.timestamp > live_after:  # replayed history has old timestamps
            outcome.produced_at.append(message.timestamp)
    return by_user, origin


def _logins(by_user: dict[str, list[ShopEvent]]) -> dict[str, dict[str, ShopEvent]]:
    """Customer -> visitor id -> the first event that names both (a login)."""
    logins: dict[str, dict[str, ShopEvent]] = defaultdict(dict)
    for user_id, events in by_user.items():
        for event in events:
            visitor = event.anonymous_id
            if event.user_id is not None and visitor is not None and visitor != user_id:
                logins[user_id].setdefault(visitor, event)
    return logins
