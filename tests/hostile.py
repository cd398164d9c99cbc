"""Hostile input payloads for the fuzz tests: a valid event with one part made hostile, or junk.

Deterministic for a seed (``random.Random``), so a failing payload can be reproduced.
"""

from __future__ import annotations

import random
from typing import Any

import orjson

TOPICS = {"click": "shop.clicks", "cart": "shop.carts", "order": "shop.orders"}

HOSTILE_NUMBERS: list[bytes] = [
    b"1e308", b"-1e308", b"1e400", b"NaN", b"Infinity", b"-Infinity", b"1" + b"0" * 400,
    b"-1", b"18446744073709551616", b"9223372036854775808", b"1e18", b"0.0000001", b"-0",
]
HOSTILE_TS: list[bytes] = [
    b"0", b"-5", b"1e12", b"4102444800", b"946684799", b'"9999-12-31T00:00:00Z"',
    b'"1970-01-01"', b'"yesterday"', b'""', b"true", b"null", b"[]", b"{}",
]
HOSTILE_STRINGS: list[bytes] = [
    b'""', b'"' + b"x" * 300_000 + b'"', b'"\xff\xfe\xfd"', b'"\\ud800"', b"123", b"null",
    b"[1, 2]", b'{"a": 1}', b"true", b'"' + "é".encode() * 5000 + b'"',
]


def valid_event(kind: str, user: str, n: int, ts: float) -> dict[str, Any]:
    event: dict[str, Any] = {"event_id": f"{user}-{kind}-{n}", "ts": ts, "user_id": user}
    if kind == "click":
        event["page"] = "/p/1"
    elif kind == "cart":
        event.update(action="add", product_id="p1", price=10.0, quantity=1)
    else:
        event.update(order_id=f"{user}-o{n}", total=20.0,
                     items=[{"product_id": "p1", "price": 20.0, "quantity": 1}])
    return event


def _replace(raw: bytes, field: str, value: bytes) -> bytes:
    """The event's JSON with one field's value replaced by raw (possibly invalid) JSON text."""
    head, sep, tail = raw.partition(f'"{field}":'.encode())
    if not sep:
        return raw[:-1] + b',"' + field.encode() + b'":' + value + b"}"
    depth, end = 0, 0
    while end < len(tail):
        char = tail[end]
        if char in b"[{":
            depth += 1
        elif char in b"]}":
            if depth == 0:
                break
            depth -= 1
        elif char == ord(",") and depth == 0:
            break
        end += 1
    return head + sep + value + tail[end:]


def hostile_payload(rng: random.Random, kind: str, user: str, n: int, ts: float) -> bytes:
    raw = orjson.dumps(valid_event(kind, user, n, ts))
    choice = rng.randrange(12)
    if choice == 0:
        return _replace(raw, "ts", rng.choice(HOSTILE_TS))
    if choice == 1:
        field = {"click": "page", "cart": "product_id", "order": "order_id"}[kind]
        return _replace(raw, field, rng.choice(HOSTILE_STRINGS))
    if choice == 2:
        field = {"click": "event_id", "cart": "quantity", "order": "total"}[kind]
        return _replace(raw, field, rng.choice(HOSTILE_NUMBERS))
    if choice == 3:  # duplicated key: the last one wins (documented)
        return raw[:-1] + b',"ts":' + rng.choice(HOSTILE_TS) + b"}"
    if choice == 4:
        depth = rng.choice([10, 1000, 5000])
        return b'{"event_id":"x","nested":' + b"[" * depth + b"]" * depth + b"}"
    if choice == 5:
        return rng.choice([b"", b"null", b"[]", b"{", b"\xff\xfe", b"not json", b"[1,2,3]",
                           b'"a string"', b"1e400"])
    if choice == 6:  # an envelope of valid and hostile elements
        return b"[" + raw + b"," + _replace(raw, "user_id", b"[]") + b"]"
    if choice == 7 and kind == "order":
        item = b'{"product_id":"p","price":1,"quantity":' + rng.choice(HOSTILE_NUMBERS) + b"}"
        return _replace(raw, "items", b"[" + item + b"]")
    if choice == 8:
        return _replace(raw, "user_id", rng.choice(HOSTILE_STRINGS))
    if choice == 9:  # a field of the wrong type
        field = rng.choice(list(orjson.loads(raw)))
        return _replace(raw, field, rng.choice([b"[]", b"{}", b"true", b"null", b"1.5"]))
    return raw  # valid: hostile payloads are mixed with good traffic
