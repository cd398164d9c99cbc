"""Wire format of input events: orjson decoding plus validation, with a reason for every reject.

>>> decode_event("order", b'{"event_id":"e1","ts":1767225600,"user_id":"u1",'
...                       b'"order_id":"o1","total":12.5}').total
12.5
>>> try:
...     decode_event("click", b'{"event_id":"e1","ts":"yesterday","user_id":"u1"}')
... except InvalidEvent as exc:
...     print(exc.reason, "|", exc.detail)
invalid_field | ts: not an ISO-8601 timestamp: 'yesterday'; page: Field required
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from features.errors import BadInput
from features.events import EVENT_TYPES, ShopEvent


class InvalidEvent(BadInput):
    """An input message that is not a valid event.

    ``reason`` is a short code (a metric label: few distinct values); ``detail`` says exactly
    what is wrong, for the dead-letter record.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _describe(error: ValidationError) -> tuple[str, str]:
    problems = error.errors()
    missing = all(p["type"] == "missing" for p in problems)
    detail = "; ".join(
        f"{'.'.join(str(part) for part in p['loc']) or 'event'}: "
        f"{p['msg'].removeprefix('Value error, ')}"
        for p in problems
    )
    return ("missing_field" if missing else "invalid_field"), detail


#: Most events one batched envelope may carry.
MAX_ENVELOPE_EVENTS = 1000
#: Largest message value decoded (a full envelope of ordinary events is a few hundred KB).
MAX_MESSAGE_BYTES = 1 << 20


def decode_message(kind: str, raw: bytes | None) -> list[ShopEvent | InvalidEvent]:
    """A message's events: one (a JSON object) or several (a batched envelope: a JSON array
    of event objects, as browser trackers send a user's events together). Each element is
    decoded on its own: an invalid one does not spoil the others.

    >>> [type(e).__name__ for e in decode_message("click", b'[{"event_id":"e1",'
    ...     b'"ts":1767225600,"anonymous_id":"a1","page":"/"}, {"event_id":"e2"}]')]
    ['ClickEvent', 'InvalidEvent']
    """
    if raw and len(raw) > MAX_MESSAGE_BYTES:
        return [InvalidEvent("too_large", f"the message has {len(raw):,} bytes, more than "
                                          f"{MAX_MESSAGE_BYTES:,}")]
    if not raw or raw.lstrip()[:1] != b"[":
        try:
            return [decode_event(kind, raw)]
        except InvalidEvent as exc:
            return [exc]
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return [InvalidEvent("invalid_json", str(exc))]
    if not items or len(items) > MAX_ENVELOPE_EVENTS:
        return [InvalidEvent("bad_envelope", f"an envelope carries 1 to {MAX_ENVELOPE_EVENTS} "
                                             f"events, this one {len(items)}")]
    decoded: list[ShopEvent | InvalidEvent] = []
    for index, item in enumerate(items):
        try:
            decoded.append(_validate(kind, item))
        except InvalidEvent as exc:
            decoded.append(InvalidEvent(exc.reason, f"[{index}] {exc.detail}"))
    return decoded


def decode_event(kind: str, raw: bytes | None) -> ShopEvent:
    """Decode and validate one message of the given kind ("click", "cart" or "order")."""
    if not raw:
        raise InvalidEvent("empty", "the message has no value")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("invalid_json", str(exc)) from None
    return _validate(kind, data)


def _validate(kind: str, data: Any) -> ShopEvent:
    if not isinstance(data, dict):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {type(data).__name__}")
    try:
        return EVENT_TYPES[kind].model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent(*_describe(exc)) from None


def event_time_ms(event: Mapping[str, Any]) -> int | None:
    """The Kafka timestamp for an event: its event time in ms (None: the producer's clock).

    Producers of history (replay, the simulator) stamp each message with its event's time, so
    that the worker can release the input topics in event-time order (:mod:`streams.runtime.inbox`).

    >>> event_time_ms({"ts": 1767225600.5}), event_time_ms({"ts": "2026-01-01"})
    (1767225600500, None)
    """
    ts = event.get("ts")
    if isinstance(ts, int | float) and not isinstance(ts, bool) and 0 <= ts < 2**41 / 1000:
        return int(ts * 1000)
    return None
