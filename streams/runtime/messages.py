"""What flows through a batch: input messages, dead letters, and the batch's outcome.

Its own module so that the batch step (:mod:`streams.runtime.batch`) and identity stitching
(:mod:`streams.runtime.identity`), which both produce and consume these, import it rather than
each other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from segmenter.engine import SegmentChange, UserRecord

LoadRecord = Callable[[str], UserRecord | None]


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
    #: Users whose records are to be deleted, not stored: visitors merged into customers,
    #: and users forgotten on request.
    deleted: set[str] = field(default_factory=set)
    #: Identity handoffs for other workers: (key, value) for the identity topic.
    handoffs: list[tuple[str, bytes]] = field(default_factory=list)
    #: The batch was read while catching up: its users' events were folded in and their
    #: records stored unsettled, not evaluated (see
    #: :meth:`streams.runtime.batch.BatchProcessor.settle`), logins apart.
    deferred: bool = False
    #: Users whose events or evaluation raised, each with what happened (logged and counted;
    #: their events are dead-lettered, or their record kept as it was).
    failures: list[str] = field(default_factory=list)
    #: Time-driven work stopped at its slice's bound with more of it waiting (see
    #: :meth:`streams.runtime.batch.BatchProcessor.review`).
    more: bool = False
