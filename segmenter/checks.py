"""Contract checks shared by every segmentation and every stored type (as River's ``river.checks``
runs one battery over every estimator).

:func:`yield_checks` picks the checks that apply to an object; each check takes the object and
the :class:`Cases` to try it on, and raises :class:`AssertionError` saying what broke. The
objects are a segmentation (anything with ``predict_one``, ``review_after_days`` and
``descriptions``: see :func:`segmentations_of`), a :class:`SegmentEngine` (driven through a
user's journey: :func:`drive`), a :class:`SegmentChange`, or any stored type with a
:class:`Codec` (see :mod:`segmenter.stored_checks`, whose ``stored_types`` finds every class
that serialises).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from features.profile import DAY
from segmenter.behavior import BehaviorSegmentation, behavior_vector
from segmenter.check_cases import Cases, Features, Journey
from segmenter.engine import Segmentation, SegmentEngine
from segmenter.records import SegmentChange, UserRecord
from segmenter.stored_checks import (
    check_change_event_json,
    check_round_trip,
    check_round_trip_is_stable,
)
from segmenter.value_tiers import ValueTierSegmentation

#: Numbers a rule may compare with (config/segments.yaml): the largest a feature is tried at.
HUGE = 1e15
#: Days after a user's latest event to look from: within the hour (a cart), the month, the
#: quarter, the year, and beyond.
LOOKS_AFTER_DAYS = (0.0, 0.02, 20.0, 40.0, 100.0, 200.0, 400.0)
#: A journey whose reviews do not move forward would never end.
MAX_REVIEWS = 2_000



class BehaviorAsSegmentation:
    """The behaviour segmentation seen through the :class:`Segmentation` protocol (the engine
    places users with it by ``assign``, nearest centre of the current model)."""

    name = "behavior"

    def __init__(self, behavior: BehaviorSegmentation, review_days: float) -> None:
        self.behavior = behavior
        self.review_days = review_days

    def predict_one(self, features: Features) -> str | None:
        model = self.behavior.model
        return None if model is None else model.predict_one(behavior_vector(features))

    def review_after_days(self, features: Features, now: float) -> float | None:
        return None if self.behavior.model is None else self.review_days

    def descriptions(self) -> dict[str, str]:
        model = self.behavior.model
        return {} if model is None else {segment: "" for segment in model.ids}



#: Segmentations whose ``review_after_days`` is a periodic look, not the moment of a change:
#: a predicted value falls, and a behaviour vector's recency grows, continuously while a
#: customer does not order.
PERIODIC_REVIEW: tuple[type, ...] = (ValueTierSegmentation, BehaviorAsSegmentation)

def segmentations_of(engine: SegmentEngine) -> list[Segmentation]:
    """Every segmentation the engine applies, as it built them from its settings."""
    found: list[Segmentation] = list(engine.segmentations)
    if engine.behavior is not None:
        found.append(BehaviorAsSegmentation(engine.behavior, engine.behavior_review_s / DAY))
    return found


def yield_checks(obj: Any) -> Iterator[Callable[[Any, Cases], None]]:
    """The checks that apply to ``obj``."""
    if isinstance(obj, SegmentEngine):
        yield from (check_changes_match_membership, check_reviews_move_forward,
                    check_reviews_miss_no_change, check_engine_is_deterministic,
                    check_restored_record_continues_alike)
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
    for (None: for ever), so time-driven reviews miss no change. Looked at from ``now`` and
    from moments after the user's latest event, where time-driven edges lie."""
    for user in cases.users:
        # Never before the latest event: the engine does not evaluate a user in their past.
        starts = {max(cases.now, user.last_seen),
                  *(user.last_seen + days * DAY for days in LOOKS_AFTER_DAYS
                    if math.isfinite(user.last_seen))}
        for now in sorted(starts):
            features = cases.features_of(user, now)
            segment = segmentation.predict_one(features)
            after = segmentation.review_after_days(features, now)
            span = 3 * 365 * DAY if after is None else after * DAY
            # A minute short of the edge: engagement is rounded to 6 decimals in a snapshot.
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
    #: The record as stored after the call.
    stored: bytes = b""


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
                              record.review_at, record.to_bytes()))
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


def check_reviews_miss_no_change(engine: SegmentEngine, cases: Cases) -> None:
    """Looked at a minute before the engine next looks, a user is where the engine left them
    (but for segmentations reviewed periodically): the next review comes in time."""
    periodic = {s.name for s in segmentations_of(engine)
                if isinstance(s, PERIODIC_REVIEW)}
    log = drive(copy.deepcopy(engine), "u-check", cases.journey, cases.journey_end)
    # One copy for every probe: a probe moves only this user, and scores stay frozen until
    # the population is refreshed.
    probe = copy.deepcopy(engine)
    for evaluation, following in itertools.pairwise(log):
        probe_at = following.now - 60.0
        if probe_at <= evaluation.now:
            continue
        record = probe.load_record(evaluation.stored)
        missed = [(c.segmentation, c.previous, c.current)
                  for c in probe.review("u-check", record, probe_at)
                  if c.segmentation not in periodic]
        assert not missed, (f"{evaluation.action} at {evaluation.now} set the review at "
                            f"{evaluation.review_at}, but at {probe_at}: {missed}")


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

