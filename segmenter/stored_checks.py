"""Contract checks of the stored types (part of the battery in :mod:`segmenter.checks`): each
type that goes on the wire (Kafka, the changelog, Redis) has a :class:`Codec`, comes back as it
was, and is written again as it was read; a change event says what the change is.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson

from features.profile import DAY, FeatureParams, UserFeatures
from segmenter.behavior import BehaviorModel, StatsDelta
from segmenter.check_cases import Cases, Codec, Features
from segmenter.clv import BuyTillYouDie, ValueModel
from segmenter.population import CustomerValues
from segmenter.records import SegmentChange, UserRecord, _json_of, outbox_of
from segmenter.regrouping import Regrouping


def codecs(params: FeatureParams) -> dict[type, Codec]:
    """Every stored type's way to the wire and back, as the project writes and reads it
    (nested states go through orjson without options, as inside ``UserRecord.to_bytes``)."""
    from features.cart import OpenCart
    from features.decay import DecayedSum
    from features.orders import OrderLedger
    from features.seen_ids import SeenIds
    from features.sessions import SessionCounter
    from features.traits import Channels, Traits
    from features.windows import DailyBuckets

    def nested(dump: Callable[[Any], Any], load: Callable[[Any], Any],
               content: Callable[[Any], Any] | None = None) -> Codec:
        return Codec(lambda obj: orjson.dumps(dump(obj)),
                     lambda data: load(orjson.loads(data)), content)

    horizon = max(params.windows_days, default=1)
    return {
        UserRecord: Codec(UserRecord.to_bytes, lambda data: UserRecord.from_bytes(data, params),
                          _record_content),
        BehaviorModel: Codec(BehaviorModel.to_json, BehaviorModel.from_json),
        StatsDelta: Codec(StatsDelta.to_json, StatsDelta.from_json,
                          lambda delta: orjson.loads(delta.to_json())),
        UserFeatures: nested(UserFeatures.to_dict, lambda s: UserFeatures.from_dict(s, params),
                             _features_content),
        ValueModel: nested(ValueModel.to_dict, ValueModel.from_dict),
        BuyTillYouDie: nested(BuyTillYouDie.to_dict, lambda s: BuyTillYouDie(**s)),
        CustomerValues: nested(lambda v: v, lambda s: CustomerValues(**s)),
        DailyBuckets: nested(DailyBuckets.to_dict, lambda s: DailyBuckets.from_dict(s, horizon),
                             _amounts),
        DecayedSum: nested(DecayedSum.to_dict,
                           lambda s: DecayedSum.from_dict(s, params.half_life_days * DAY)),
        SessionCounter: nested(SessionCounter.to_dict, lambda s: SessionCounter.from_dict(
            s, params.session_gap_s, params.lateness_s)),
        SeenIds: nested(SeenIds.to_state, SeenIds.from_state, lambda ids: ids.times),
        OpenCart: nested(OpenCart.to_state, OpenCart.from_state),
        OrderLedger: nested(OrderLedger.to_state, OrderLedger.from_state),
        Traits: nested(Traits.to_state, Traits.from_state),
        Channels: nested(Channels.to_state, Channels.from_state),
        Regrouping: nested(Regrouping.to_json, Regrouping.from_json, Regrouping.to_json),
    }


def _amounts(buckets: Any) -> dict[int, dict[str, float]]:
    """A day's amounts that count: a zero is not kept (the same as none)."""
    return {day: {name: amount for name, amount in bucket.items() if amount}
            for day, bucket in buckets.days.items()}


def _features_content(features: UserFeatures) -> Any:
    return orjson.loads(orjson.dumps({**features.to_dict(), "days": _amounts(features.days)},
                                     option=orjson.OPT_NON_STR_KEYS))


def _record_content(record: UserRecord) -> Any:
    kept = {name: getattr(record, name) for name in UserRecord.__slots__ if name != "features"}
    return _features_content(record.features), orjson.loads(orjson.dumps(kept))


def stored_types(packages: Sequence[str] = ("features", "segmenter")) -> set[type]:
    """Every class of these packages that writes itself out and reads itself back (a pair
    ``to_X`` / ``from_X``): a new one shows up here before anyone gives it a codec."""
    found: set[type] = set()
    for package in packages:
        for module_info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            module = importlib.import_module(f"{package}.{module_info.name}")
            for cls in vars(module).values():
                if (inspect.isclass(cls) and cls.__module__ == module.__name__
                        and any(hasattr(cls, f"to_{form}") and hasattr(cls, f"from_{form}")
                                for form in ("bytes", "json", "dict", "state"))):
                    found.add(cls)
    return found


def _codec(obj: Any, cases: Cases) -> Codec:
    codec = cases.codecs.get(type(obj))
    assert codec is not None, f"no codec for stored type {type(obj).__name__}"
    return codec


def check_round_trip(obj: Any, cases: Cases) -> None:
    """Written and read back, an object is what it was (compared as written, and with ``==``
    where that compares content)."""
    codec = _codec(obj, cases)
    restored = codec.load(codec.dump(obj))
    assert type(restored) is type(obj)
    content = codec.content or (lambda same: same)
    kept, was = content(restored), content(obj)
    assert kept == was, f"{type(obj).__name__} restored differs: {_difference(kept, was)}"
    if isinstance(obj, UserFeatures):  # what the segmentations see
        assert _same(restored.snapshot(cases.now), obj.snapshot(cases.now))
    if isinstance(obj, UserRecord):
        assert _same(restored.features.snapshot(cases.now), obj.features.snapshot(cases.now))
        assert (restored.segments, restored.entered, restored.customer) == (
            obj.segments, obj.entered, obj.customer)


def _difference(left: Any, right: Any, path: str = "") -> str:
    """Where two contents first differ, e.g. ``[1].claimed: [] != ['a2']``."""
    if isinstance(left, dict) and isinstance(right, dict):
        for key in sorted(left.keys() | right.keys(), key=str):
            if left.get(key) != right.get(key):
                return _difference(left.get(key), right.get(key), f"{path}.{key}")
    if isinstance(left, list | tuple) and isinstance(right, list | tuple) and len(left) == len(
            right):
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            if a != b:
                return _difference(a, b, f"{path}[{index}]")
    return f"{path or 'value'}: {left!r:.200} != {right!r:.200}"


def check_round_trip_is_stable(obj: Any, cases: Cases) -> None:
    """A restored object is written as it was read: restores (restarts, rebalances) do not
    drift, however many times they happen."""
    codec = _codec(obj, cases)
    data = codec.dump(codec.load(codec.dump(obj)))
    assert _content(codec.dump(codec.load(data))) == _content(data), type(obj).__name__


def _content(data: bytes) -> Any:
    """What bytes say, ignoring key order (a stored record is JSON in an LZ4 block, and its
    outbox after it)."""
    return orjson.loads(_json_of(data) if data[:1] != b"{" else data), outbox_of(data)


def _same(left: Features, right: Features) -> bool:
    """Equal feature snapshots (nan equals nan: an unknown age stays unknown)."""
    return left.keys() == right.keys() and all(
        left[k] == right[k] or (left[k] != left[k] and right[k] != right[k]) for k in left)


def check_change_event_json(change: SegmentChange, cases: Cases) -> None:
    """The published change event says what the change is: its id, type and fields, and its
    time to the millisecond."""
    event = orjson.loads(change.to_json(emitted_at=cases.now))
    expected_type = ("enter" if change.previous is None
                     else "leave" if change.current is None else "move")
    assert event["type"] == change.type == expected_type
    for name in ("event_id", "user_id", "segmentation", "previous", "current", "cause",
                 "merged_into", "model_version"):
        assert event[name] == getattr(change, name), name
    ts = datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()
    assert abs(ts - change.ts) <= 0.0011, (event["ts"], change.ts)
