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

import orjson
from pydantic import ValidationError

from features.events import EVENT_TYPES, ShopEvent


class InvalidEvent(ValueError):
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


def decode_event(kind: str, raw: bytes | None) -> ShopEvent:
    """Decode and validate one message of the given kind ("click", "cart" or "order")."""
    if not raw:
        raise InvalidEvent("empty", "the message has no value")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("invalid_json", str(exc)) from None
    if not isinstance(data, dict):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {type(data).__name__}")
    try:
        return EVENT_TYPES[kind].model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent(*_describe(exc)) from None
