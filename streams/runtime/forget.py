"""Forgetting a user (an erasure request): ``segmenter forget USER_ID`` or a message on the
forget topic (``kafka.topics.forget``, keyed by the user id, partitioned like the inputs, so
it reaches the worker that owns the user).

The worker that owns the user publishes their exit from every segment (cause
``forget:<request id>``), removes their stored state (a tombstone in the changelog), their
Redis membership and their place in every segment set, and stops counting them in the
population and the behaviour model. Events of the user that arrive later start a new user.
"""

from __future__ import annotations

import orjson

from segmenter.engine import SegmentEngine, UserRecord
from streams.runtime.messages import BatchOutcome, DeadLetter, LoadRecord, Message


def apply_forget(engine: SegmentEngine, message: Message, load: LoadRecord,
                 outcome: BatchOutcome, now: float) -> tuple[str, UserRecord] | None:
    """Forget the user a forget message names; return them (None: a bad request, dead-
    lettered, or a user this worker does not hold)."""
    try:
        request = orjson.loads(message.value or b"")
        user_id, request_id = request["user_id"], str(request.get("request_id", ""))
        if not isinstance(user_id, str) or not user_id:
            raise TypeError("user_id must be a non-empty string")
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        outcome.dead_letters.append(DeadLetter(message, "bad_forget_request", str(exc)))
        return None
    record = outcome.records.get(user_id) or load(user_id)
    if record is None:
        return None
    outcome.changes += engine.release(user_id, record, None, now,
                                      f"forget:{request_id or message.offset}")
    outcome.deleted.add(user_id)
    return user_id, record
