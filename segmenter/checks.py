"""Contract checks shared by every segmentation and every stored type (as River's ``river.checks``
runs one battery over every estimator).

:func:`yield_checks` picks the checks that apply to an object; each check takes the object and
the :class:`Cases` to try it on, and raises :class:`AssertionError` saying what broke. The
objects are a segmentation (anything with ``predict_one``, ``review_after_days`` and
``descriptions``: see :func:`segmentations_of`), a :class:`SegmentEngine` (driven through a
user's journey: :func:`drive`), a :class:`SegmentChange`, or any stored type with a
:class:`Codec` (:func:`codecs`; :func:`stored_types` finds every class that serialises).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import math
import pkgutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from features.events import ShopEvent
from features.profile import DAY, FeatureParams, UserFeatures
from segmenter.behavior import BehaviorModel, BehaviorSegmentation, StatsDelta, behavior_vector
from segmenter.clv import BuyTillYouDie, ValueModel
from segmenter.engine import SegmentEngine, Segmentation
from segmenter.population import CustomerValues
from segmenter.records import SegmentChange, UserRecord
from segmenter.value_tiers import ValueTierSegmentation

#: Numbers a rule may compare with (config/segments.yaml): the largest a feature is tried at.
HUGE = 1e15
#: Segmentations whose ``review_after_days`` is a periodic look, not the moment of a change
#: (a predicted value falls continuously while a customer does not order).
PERIODIC_REVIEW: tuple[type, ...] = (ValueTierSegmentation,)
#: A journey whose reviews do not move forward would never end.
MAX_REVIEWS = 2_000

Features = Mapping[str, Any]
Journey = Sequence[tuple[float, Sequence[ShopEvent]]]


@dataclass(frozen=True)
class Codec:
    """How a stored type goes on the wire (Kafka, the changelog, Redis) and comes back."""

    dump: Callable[[Any], bytes]
    load: Callable[[bytes], Any]
    #: What must come back unchanged (None: the object itself, by ``==``); for types whose
    #: ``==`` does not compare content (identity, numpy arrays) or holds what is not kept
    #: (a day's zero amounts).
    content: Callable[[Any], Any] | None = None


@dataclass
class Cases:
    """What the checks try an object on: users' feature states at ``now``, a journey through
    the engine, and the stored types' codecs."""

    now: float
    users: Sequence[UserFeatures] = ()
    journey: Journey = ()
    journey_end: float = 0.0
    codecs: Mapping[type, Codec] = field(default_factory=dict)
    #: What segmentations read of a user at a time (``SegmentEngine.features_of``).
    features_of: Callable[[UserFeatures, float], dict[str, Any]] = UserFeatures.snapshot


class BehaviorAsSegmentation:
    """The behaviour segmentation seen through the :class:`Segmentation` protocol (the engine
    places users with it by ``assign``, nearest centre of the current model)."""

    name = "behavior"

    def __init__(self, behavior: BehaviorSegmentation) -> None:
        self.behavior = behavior

    def predict_one(self, features: Features) -> str | None:
        model = self.behavior.model
        return None if model is None else model.predict_one(behavior_vector(features))

    def review_after_days(self, features: Features, now: float) -> float | None:
        return None  # only a new model version moves a user who does nothing

    def descriptions(self) -> dict[str, str]:
        model = self.behavior.model
        return {} if model is None else {segment: "" for segment in model.ids}


def segmentations_of(engine: SegmentEngine) -> list[Segmentation]:
    """Every segmentation the engine applies, as it built them from its settings."""
    found: list[Segmentation] = list(engine.segmentations)
    if engine.behavior is not None:
        found.append(BehaviorAsSegmentation(engine.behavior))
    return found


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


def yield_checks(obj: Any) -> Iterator[Callable[[Any, Cases], None]]:
    """The checks that apply to ``obj``."""
    if isinstance(obj, SegmentEngine):
        yield from (check_changes_match_membership, check_reviews_move_forward,
                    check_engine_is_deterministic, check_restored_record_continues_alike)
    elif isinstance(obj, SegmentChange):
        yield check_change_event_json
    elif all(hasattr(obj, name) for name in ("predict_one", "review_after_days",
                                              "descriptions")):
        yield from (check_predicts_known_segments, check_extreme_features,
                    check_deterministic_and_pure)
        if not isinstance(obj, PERIODIC_REVIEW):
            yield check_time_alone_waits_for_review
    else:
        yield from (check_round_trip, check_round_trip_is_stable)


def _snapshots(cases: Cases) -> list[dict[str, Any]]:
    return [cases.features_of(user, cases.now) for user in cases.users]


def _valid_segment(segmentation: Segmentation, segment: object, features: Features) -> None:
    if segment is None:
        return
    assert isinstance(segment, str) and segment, f"{segmentation.name}: segment {segment!r}"
    known = segmentation.descriptions()
    if not getattr(segmentation, "open_ended", False):
        assert segment in known, f"{segmentation.name}: {segment!r} is not in {sorted(known)}"


def _valid_review(segmentation: Segmentation, after: object) -> None:
    """A review delay is None (never) or a finite, non-negative number of days."""
    assert after is None or (isinstance(after, int | float) and math.isfinite(after)
                             and after >= 0), f"{segmentation.name}: review after {after!r}"


def check_predicts_known_segments(segmentation: Segmentation, cases: Cases) -> None:
    """Empty and typical users get no segment or a described one, and a valid review."""
    for features in _snapshots(cases):
        _valid_segment(segmentation, segmentation.predict_one(features), features)
        _valid_review(segmentation, segmentation.review_after_days(features, cases.now))


def extreme_variants(features: Features) -> Iterator[dict[str, Any]]:
    """The features with each number at 0 and at :data:`HUGE` (days also inf), then all at
    once; ``age`` also unknown (nan), as the features say it."""
    numbers = [name for name, value in features.items()
               if isinstance(value, int | float) and not isinstance(value, bool)]
    for name in numbers:
        for value in (0.0, HUGE, *((math.inf,) if name.startswith("days_since") else ())):
            yield {**features, name: value}
    for value in (0.0, HUGE):
        yield {**features, **dict.fromkeys(numbers, value)}
    if "age" in features:
        yield {**features, "age": math.nan}


def check_extreme_features(segmentation: Segmentation, cases: Cases) -> None:
    """Features at the ends of their ranges are placed and reviewed without an exception."""
    for features in _snapshots(cases):
        for variant in extreme_variants(features):
            try:
                segment = segmentation.predict_one(variant)
                after = segmentation.review_after_days(variant, cases.now)
            except Exception as exc:
                changed = {k: v for k, v in variant.items() if v != features.get(k)}
                raise AssertionError(f"{segmentation.name} raised {exc!r} on {changed}") from exc
            _valid_segment(segmentation, segment, variant)
            _valid_review(segmentation, after)


def check_deterministic_and_pure(segmentation: Segmentation, cases: Cases) -> None:
    """The same features give the same segment, and the features are left as they were (the
    engine hands one snapshot to every segmentation in turn)."""
    for features in _snapshots(cases):
        before = orjson.dumps(features, option=orjson.OPT_SERIALIZE_NUMPY)
        first = segmentation.predict_one(features)
        review = segmentation.review_after_days(features, cases.now)
        assert orjson.dumps(features, option=orjson.OPT_SERIALIZE_NUMPY) == before, (
            f"{segmentation.name} changed the features it was given")
        assert segmentation.predict_one(dict(features)) == first, segmentation.name
        assert segmentation.review_after_days(dict(features), cases.now) == review


def check_time_alone_waits_for_review(segmentation: Segmentation, cases: Cases) -> None:
    """A user who does nothing keeps their segment until the review the segmentation asked
    for (None: for ever), so time-driven reviews miss no change."""
    for user in cases.users:
        now = max(cases.now, user.last_seen)
        features = cases.features_of(user, now)
        segment = segmentation.predict_one(features)
        after = segmentation.review_after_days(features, now)
        span = 3 * 365 * DAY if after is None else after * DAY
        # A minute short of the edge: engagement is rounded to 6 decimals in the snapshot.
        for at in (now + span / 2, now + max(0.0, span - 60.0)):
            later = segmentation.predict_one(cases.features_of(user, at))
            assert later == segment, (
                f"{segmentation.name}: {segment!r} became {later!r} after "
                f"{(at - now) / DAY:.4f} days of nothing, review asked after {after!r} days")


@dataclass
class Evaluation:
    """One call of the engine: the memberships before and after, and the changes reported."""

    action: str
    now: float
    before: dict[str, str]
    changes: list[SegmentChange]
    after: dict[str, str]
    review_at: float | None


def drive(engine: SegmentEngine, user_id: str, journey: Journey, end: float,
          restore: bool = False) -> list[Evaluation]:
    """Take one user through timed batches of events as a worker does (time-driven reviews
    first, in order), then on to ``end``, then forget them. ``restore``: the record goes
    through its codec after every step, as after a restart from the changelog."""
    record, log = engine.new_record(), []

    def step(action: str, now: float, call: Callable[[UserRecord], list[SegmentChange]]) -> None:
        nonlocal record
        before = dict(record.segments)
        changes = call(record)
        log.append(Evaluation(action, now, before, changes, dict(record.segments),
                              record.review_at))
        if restore:
            record = engine.load_record(record.to_bytes())

    def review_until(until: float) -> None:
        for _ in range(MAX_REVIEWS):
            due = record.review_at
            if due is None or due > until:
                return
            step("review", due, lambda r, due=due: engine.review(user_id, r, due))
        raise AssertionError(f"{MAX_REVIEWS} reviews before {until}: they do not advance")

    for ts, events in sorted(journey, key=lambda batch: batch[0]):
        review_until(ts)
        step("learn", ts, lambda r, ts=ts, ev=events: engine.learn(user_id, r, ev, ts))
    review_until(end)
    step("forget", end, lambda r: engine.release(user_id, r, None, end, "forget:check"))
    return log


def check_changes_match_membership(engine: SegmentEngine, cases: Cases) -> None:
    """Every enter, leave and move is reported once, saying what the user was in before and
    is in after; nothing else is reported; forgetting the user reports every leave."""
    for evaluation in drive(copy.deepcopy(engine), "u-check", cases.journey, cases.journey_end):
        moved = {name for name in evaluation.before.keys() | evaluation.after.keys()
                 if evaluation.before.get(name) != evaluation.after.get(name)}
        reported = [change.segmentation for change in evaluation.changes]
        assert sorted(reported) == sorted(moved), (
            f"{evaluation.action} at {evaluation.now}: reported {reported}, moved {moved}")
        for change in evaluation.changes:
            assert change.user_id == "u-check"
            assert change.previous == evaluation.before.get(change.segmentation), change
            assert change.current == evaluation.after.get(change.segmentation), change
            assert change.previous != change.current, change
        if evaluation.action == "forget":
            assert evaluation.after == {}
            assert all(change.type == "leave" for change in evaluation.changes)


def entries_and_exits(log: Sequence[Evaluation]) -> dict[str, tuple[int, int]]:
    """Segmentation -> (changes entering a segment, changes leaving one that had been
    entered), the final forgetting left out."""
    counts: dict[str, tuple[int, int]] = {}
    entered: set[tuple[str, str]] = set()
    for evaluation in log:
        if evaluation.action == "forget":
            continue
        for change in evaluation.changes:
            enters, leaves = counts.get(change.segmentation, (0, 0))
            if (change.segmentation, change.previous) in entered:
                leaves += 1
            if change.current is not None:
                enters += 1
                entered.add((change.segmentation, change.current))
            counts[change.segmentation] = (enters, leaves)
    return counts


def check_reviews_move_forward(engine: SegmentEngine, cases: Cases) -> None:
    """A record's next review is strictly after the evaluation that set it."""
    for evaluation in drive(copy.deepcopy(engine), "u-check", cases.journey, cases.journey_end):
        if evaluation.action != "forget" and evaluation.review_at is not None:
            assert evaluation.review_at > evaluation.now, (
                f"{evaluation.action} at {evaluation.now} set the review at "
                f"{evaluation.review_at}")


def _reported(log: Sequence[Evaluation]) -> list[list[tuple[str, str, str | None, str | None]]]:
    return [[(c.event_id, c.segmentation, c.previous, c.current) for c in e.changes]
            for e in log]


def check_engine_is_deterministic(engine: SegmentEngine, cases: Cases) -> None:
    """The same journey on two like engines reports the same changes, with the same ids
    (consumers dedupe replays by them)."""
    first = drive(copy.deepcopy(engine), "u-check", cases.journey, cases.journey_end)
    second = drive(copy.deepcopy(engine), "u-check", cases.journey, cases.journey_end)
    assert _reported(first) == _reported(second)


def check_restored_record_continues_alike(engine: SegmentEngine, cases: Cases) -> None:
    """A record restored from its bytes after every step (a restart from the changelog)
    reports exactly what the record kept in memory does."""
    kept = drive(copy.deepcopy(engine), "u-check", cases.journey, cases.journey_end)
    restored = drive(copy.deepcopy(engine), "u-check", cases.journey, cases.journey_end,
                     restore=True)
    assert _reported(restored) == _reported(kept)
    assert [e.review_at for e in restored] == [e.review_at for e in kept]


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
    assert content(restored) == content(obj), f"{type(obj).__name__}: {restored!r} != {obj!r}"
    if isinstance(obj, UserFeatures):  # what the segmentations see
        assert _same(restored.snapshot(cases.now), obj.snapshot(cases.now))
    if isinstance(obj, UserRecord):
        assert _same(restored.features.snapshot(cases.now), obj.features.snapshot(cases.now))
        assert (restored.segments, restored.entered, restored.customer) == (
            obj.segments, obj.entered, obj.customer)


def check_round_trip_is_stable(obj: Any, cases: Cases) -> None:
    """A restored object is written as it was read: restores (restarts, rebalances) do not
    drift, however many times they happen."""
    codec = _codec(obj, cases)
    data = codec.dump(codec.load(codec.dump(obj)))
    assert _content(codec.dump(codec.load(data))) == _content(data), type(obj).__name__


def _content(data: bytes) -> Any:
    """What bytes say, ignoring key order (a stored record is JSON in an LZ4 block)."""
    from segmenter.records import _json_of

    return orjson.loads(_json_of(data) if data[:1] != b"{" else data)


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
