"""One batch of input messages -> updated user records, segment changes and dead letters.

No I/O here: the worker hands in the messages and a way to load a user's stored record, and
writes out what comes back. That keeps the hot path a plain loop over a batch.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from features.events import ShopEvent
from segmenter.engine import SegmentChange, SegmentEngine, UserRecord
from segmenter.schedule import ReviewSchedule
from segmenter.settings import Topics
from streams.codec import InvalidEvent, decode_event
from streams.identity import claim, handoff_in

LoadRecord = Callable[[str], UserRecord | None]
Owns = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Message:
    """An input message as read from Kafka (timestamp: producer time, epoch seconds)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message: Message
    reason: str
    detail: str


@dataclass(slots=True)
class BatchOutcome:
    """What a batch produced; ``records`` are the touched users' new states, to be stored."""

    records: dict[str, UserRecord] = field(default_factory=dict)
    changes: list[SegmentChange] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    events_by_topic: Counter[str] = field(default_factory=Counter)
    produced_at: list[float] = field(default_factory=list)
    misrouted: int = 0
    #: Visitors merged into customers: their records are to be deleted, not stored.
    merged: set[str] = field(default_factory=set)
    #: Identity handoffs for other workers: (key, value) for the identity topic.
    handoffs: list[tuple[str, bytes]] = field(default_factory=list)


class BatchProcessor:
    """Decodes, groups by user, runs the engine, and keeps the time-driven review schedule."""

    def __init__(self, engine: SegmentEngine, topics: Topics, max_clock_skew_s: float) -> None:
        self.engine = engine
        self.kinds = topics.inputs
        self.identity = topics.identity
        self.max_clock_skew_s = max_clock_skew_s
        #: The event time the stream has reached (max event time seen).
        self.watermark = 0.0
        self.schedule = ReviewSchedule()

    def process(self, messages: Iterable[Message], load: LoadRecord,
                owns: Owns = lambda user_id: True) -> BatchOutcome:
        """``owns``: whether a user's partition is this worker's (else a login's visitor is
        claimed from the worker that owns them, over the identity topic)."""
        outcome = BatchOutcome()
        by_user: dict[str, list[ShopEvent]] = defaultdict(list)
        origin: dict[int, Message] = {}
        handoffs = []
        for message in messages:
            if message.topic == self.identity:
                handoffs.append(message)
                continue
            event = self._decode(message, outcome)
            if event is None:
                continue
            origin[id(event)] = message
            user_id = event.entity_id
            if message.key is not None and message.key != user_id.encode():
                outcome.misrouted += 1
            by_user[user_id].append(event)
            outcome.events_by_topic[message.topic] += 1
            outcome.produced_at.append(message.timestamp)
            self.watermark = max(self.watermark, event.ts)
        for message in handoffs:
            handoff_in(self.engine, message, load, outcome, self.watermark, self._keep)
        too_late: list[ShopEvent] = []
        logins = _logins(by_user)
        # Visitors first, so a visitor's events of this batch are in place before a login
        # merges them into the customer.
        for user_id in sorted(by_user, key=lambda user: user in logins):
            record = outcome.records.get(user_id) or load(user_id) or self.engine.new_record()
            for visitor_id, event in logins.get(user_id, {}).items():
                if visitor_id in record.absorbed:
                    continue
                if owns(visitor_id):
                    self._merge(user_id, record, visitor_id, event, load, outcome)
                elif visitor_id not in record.claimed:
                    record.claimed.append(visitor_id)
                    outcome.handoffs.append(claim(visitor_id, user_id, event))
            outcome.changes += self.engine.learn(
                user_id, record, by_user[user_id], self.watermark, too_late)
            self._keep(user_id, record, outcome)
        lateness = self.engine.params.lateness_s
        for event in too_late:
            outcome.events_by_topic[origin[id(event)].topic] -= 1
            detail = f"ts {event.ts:.0f} is over {lateness:.0f}s before the user's latest event"
            outcome.dead_letters.append(DeadLetter(origin[id(event)], "too_late", detail))
        return outcome

    def _merge(self, user_id: str, record: UserRecord, visitor_id: str, event: ShopEvent,
               load: LoadRecord, outcome: BatchOutcome) -> None:
        visitor = outcome.records.get(visitor_id) or load(visitor_id)
        if visitor is None or visitor_id in outcome.merged:
            return
        outcome.changes += self.engine.merge(
            user_id, record, visitor_id, visitor, event.ts, f"merge:{event.event_id}")
        self._keep(visitor_id, visitor, outcome)
        outcome.merged.add(visitor_id)

    def review(self, load: LoadRecord, limit: int = 10_000) -> BatchOutcome:
        """Re-evaluate the users time has moved, then those the population's quantiles moved."""
        outcome = BatchOutcome()
        for user_id in self.schedule.pop_due(self.watermark, limit):
            record = load(user_id)
            if record is None:  # the user's partition moved to another worker
                continue
            outcome.changes += self.engine.review(user_id, record, self.watermark)
            self._keep(user_id, record, outcome)
        for user_id in self.engine.refresh_population(force=False):
            record = outcome.records.get(user_id) or load(user_id)
            if record is not None:
                outcome.changes += self.engine.rescore(user_id, record, self.watermark)
                self._keep(user_id, record, outcome)
        return outcome

    def restore(self, records: Iterable[tuple[str, UserRecord]]) -> BatchOutcome:
        """Rebuild the population, watermark and review schedule from stored records (after
        recovery); re-evaluate users whom the settings or the population's quantiles moved."""
        records = list(records)
        for user_id, record in records:
            self.engine.adopt(user_id, record)
            self.watermark = max(self.watermark, record.features.last_seen)
        rescored = self.engine.refresh_population()
        outcome = BatchOutcome()
        for user_id, record in records:
            if record.evaluated_with != self.engine.fingerprint:
                outcome.changes += self.engine.reconfigure(user_id, record, self.watermark)
            elif user_id in rescored:
                outcome.changes += self.engine.rescore(user_id, record, self.watermark)
            else:
                self.schedule.schedule(user_id, record.review_at)
                continue
            self._keep(user_id, record, outcome)
        return outcome

    def _keep(self, user_id: str, record: UserRecord, outcome: BatchOutcome) -> None:
        outcome.records[user_id] = record
        self.schedule.schedule(user_id, record.review_at)

    def _decode(self, message: Message, outcome: BatchOutcome) -> ShopEvent | None:
        kind = self.kinds.get(message.topic)
        try:
            if kind is None:
                raise InvalidEvent("unknown_topic", f"no event kind for topic {message.topic!r}")
            event = decode_event(kind, message.value)
            if event.ts > time.time() + self.max_clock_skew_s:
                raise InvalidEvent(
                    "ts_in_future",
                    f"ts {event.ts:.0f} is more than {self.max_clock_skew_s:.0f}s ahead of now",
                )
        except InvalidEvent as exc:
            outcome.dead_letters.append(DeadLetter(message, exc.reason, exc.detail))
            return None
        return event


def _logins(by_user: dict[str, list[ShopEvent]]) -> dict[str, dict[str, ShopEvent]]:
    """Customer -> visitor id -> the first event that names both (a login)."""
    logins: dict[str, dict[str, ShopEvent]] = defaultdict(dict)
    for user_id, events in by_user.items():
        for event in events:
            visitor = event.anonymous_id
            if event.user_id is not None and visitor is not None and visitor != user_id:
                logins[user_id].setdefault(visitor, event)
    return logins
