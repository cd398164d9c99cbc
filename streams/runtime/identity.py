"""Identity stitching across workers: a login's visitor history moves over the identity topic.

A visitor's events are keyed by their ``anonymous_id`` and a customer's by their ``user_id``,
so with several workers the two records can live on different workers. When the customer's
worker sees a login whose visitor it does not own, it sends a **claim** keyed by the visitor
id; the identity topic is partitioned like the inputs, so the visitor's own worker gets it.
That worker releases the visitor (they leave every segment, ``merged_into`` the customer) and
sends a **transfer** keyed by the customer id, carrying the visitor's history, which the
customer's worker folds in once (``UserRecord.absorbed``). Both steps are idempotent.

>>> from features.events import ClickEvent
>>> login = ClickEvent(event_id="c9", ts=1_767_225_600.0, user_id="u1", anonymous_id="a1",
...                    page="/")
>>> key, value = claim("a1", "u1", login)
>>> key, orjson.loads(value)["type"], orjson.loads(value)["cause"]
('a1', 'claim', 'merge:c9')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from features.events import ShopEvent
from features.profile import UserFeatures
from segmenter.engine import SegmentEngine, UserRecord
from streams.runtime.messages import BatchOutcome, DeadLetter, LoadRecord, Message

Keep = Callable[[str, UserRecord, BatchOutcome], None]


def claim(visitor_id: str, user_id: str, login: ShopEvent) -> tuple[str, bytes]:
    """The message asking the visitor's worker for their history."""
    return visitor_id, orjson.dumps({
        "type": "claim", "visitor": visitor_id, "customer": user_id, "ts": login.ts,
        "cause": f"merge:{login.event_id}",
    })


def handoff_in(engine: SegmentEngine, message: Message, load: LoadRecord,
               outcome: BatchOutcome, now: float, keep: Keep) -> None:
    """Act on a claim (release the visitor) or a transfer (absorb their history)."""
    try:
        note: dict[str, Any] = orjson.loads(message.value or b"")
        kind, visitor_id, user_id = note["type"], note["visitor"], note["customer"]
        ts, cause = float(note["ts"]), str(note["cause"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        outcome.dead_letters.append(DeadLetter(message, "invalid_handoff", repr(exc)))
        return
    if kind == "claim":
        visitor = outcome.records.get(visitor_id) or load(visitor_id)
        if visitor is None or visitor_id in outcome.deleted:
            return  # no history here (or already released): nothing to hand over
        outcome.changes += engine.release(visitor_id, visitor, user_id, ts, cause)
        keep(visitor_id, visitor, outcome)
        outcome.deleted.add(visitor_id)
        outcome.handoffs.append((user_id, orjson.dumps({
            **note, "type": "transfer", "history": visitor.features.to_dict()})))
    elif kind == "transfer":
        record = outcome.records.get(user_id) or load(user_id) or engine.new_record()
        history = UserFeatures.from_dict(note["history"], engine.params)
        outcome.changes += engine.absorb(user_id, record, visitor_id, history, now, cause)
        keep(user_id, record, outcome)
