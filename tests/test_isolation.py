"""Hostile values are rejected at decoding with a reason, and a failure while applying one
user's events is that user's alone: the batch step alone, no I/O."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from segmenter.engine import SegmentEngine, UserRecord
from segmenter.settings import load_settings
from streams.runtime.batch import BatchProcessor
from streams.runtime.codec import MAX_MESSAGE_BYTES, decode_message
from streams.runtime.messages import Message

SETTINGS = load_settings()
DAY = 86_400.0


def order(user: str, n: int, ts: float, **fields: Any) -> Message:
    body = {"event_id": f"{user}-{n}", "ts": ts, "user_id": user, "order_id": f"{user}-{n}",
            "total": 80.0, **fields}
    return Message("shop.orders", 0, n, user.encode(), orjson.dumps(body), ts)


@pytest.mark.parametrize(("kind", "body", "reason"), [
    ("order", {"total": 1e308}, "invalid_field"),
    ("order", {"total": 1e18}, "invalid_field"),
    ("order", {"items": [{"product_id": "p", "price": 1.0, "quantity": 10**18}]},
     "invalid_field"),
    ("order", {"items": [{"product_id": "p", "price": 1.0}] * 1001}, "invalid_field"),
    ("cart", {"action": "add", "product_id": "p", "quantity": 10**18}, "invalid_field"),
    ("click", {"page": "/" * 5000}, "invalid_field"),
])
def test_values_the_arithmetic_and_storage_cannot_hold_are_rejected(
        kind: str, body: dict[str, Any], reason: str) -> None:
    base = {"event_id": "e", "ts": time.time(), "user_id": "u", "order_id": "o",
            "total": 1.0, "page": "/"}
    [result] = decode_message(kind, orjson.dumps({**base, **body}))
    assert getattr(result, "reason", None) == reason, result


def test_huge_and_deeply_nested_messages_are_rejected_with_a_reason() -> None:
    [huge] = decode_message("click", b'{"page": "' + b"x" * MAX_MESSAGE_BYTES + b'"}')
    assert getattr(huge, "reason", None) == "too_large"
    [deep] = decode_message("click", b"[" * 5000 + b"]" * 5000)
    assert getattr(deep, "reason", None) in ("invalid_json", "bad_envelope")
    [bad_utf8] = decode_message("click", b'{"page": "\xff\xfe"}')
    assert getattr(bad_utf8, "reason", None) == "invalid_json"


class Fragile(SegmentEngine):
    """Raises while applying the events of user "bad" (a bug, or a value nothing checked)."""

    def learn(self, user_id: str, record: UserRecord, *args: Any) -> Any:
        if user_id == "bad":
            record.features.counts["orders"] = 999  # half-applied when it raises
            raise OverflowError("int too large to convert to float")
        return super().learn(user_id, record, *args)

    def fold(self, record: UserRecord, *args: Any) -> Any:
        if record.features.counts.get("poison"):
            record.features.counts["orders"] = 999
            raise OverflowError("int too large to convert to float")
        return super().fold(record, *args)


def test_a_failing_user_is_dead_lettered_and_the_rest_of_the_batch_proceeds() -> None:
    processor = BatchProcessor(Fragile(SETTINGS), SETTINGS.kafka.topics, 3600)
    now = time.time()
    batch = [order("good", 1, now), order("bad", 1, now), order("bad", 2, now + 1),
             order("other", 1, now)]
    outcome = processor.process(batch, lambda u: None, lambda u: True)
    assert set(outcome.records) == {"good", "other"}
    assert {c.user_id for c in outcome.changes} == {"good", "other"}
    assert [(d.message.offset, d.reason) for d in outcome.dead_letters] == [
        (1, "apply_failed"), (2, "apply_failed")]
    assert "OverflowError" in outcome.dead_letters[0].detail
    assert "user bad" in outcome.failures[0] and len(outcome.failures) == 1
    assert outcome.events_by_topic["shop.orders"] == 2


def test_a_user_waiting_in_a_backfill_keeps_their_stored_record() -> None:
    processor = BatchProcessor(Fragile(SETTINGS), SETTINGS.kafka.topics, 3600)
    old = time.time() - 100 * DAY
    first = processor.process([order("u", 1, old)], lambda u: None, lambda u: True, 3600.0)
    assert first.deferred and first.records["u"].unsettled == [old, "u-1"]
    first.records["u"].features.counts["poison"] = 1
    stored = {"u": first.records["u"].to_bytes()}

    def load(user: str) -> UserRecord | None:
        return processor.engine.load_record(stored[user]) if user in stored else None
    second = processor.process([order("u", 2, old + DAY)], load, lambda u: True, 3600.0)
    assert [d.reason for d in second.dead_letters] == ["apply_failed"]
    assert "u" not in second.records  # the stored record is not replaced by a half-applied one
    settled = processor.settle(10, load)
    assert settled.records["u"].features.counts["orders"] == 1
    assert settled.records["u"].unsettled is None


def test_a_failing_evaluation_while_settling_keeps_the_stored_record() -> None:
    class Unsettled(SegmentEngine):
        def settle_unsettled(self, *args: Any) -> Any:
            raise ZeroDivisionError("division by zero")

    processor = BatchProcessor(Unsettled(SETTINGS), SETTINGS.kafka.topics, 3600)
    old = time.time() - 100 * DAY
    folded = processor.process([order("u", 1, old)], lambda u: None, lambda u: True, 3600.0)
    stored = folded.records["u"].to_bytes()
    settled = processor.settle(10, lambda u: processor.engine.load_record(stored))
    # Nothing to write: the stored record (events folded in, segments as they were) stays.
    assert not settled.records and not settled.changes and not processor.unsettled
    assert "ZeroDivisionError" in settled.failures[0]
