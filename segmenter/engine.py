"""From a user's events to memberships and changes: the pure core the stream worker drives.

A :class:`UserRecord` is everything kept per user (features, current segments, when time alone
may next move them); :class:`SegmentEngine` folds events into it and reports every enter, leave
or move as a :class:`SegmentChange`.

>>> from features.events import OrderEvent
>>> from segmenter.settings import load_settings
>>> engine = SegmentEngine(load_settings(environ={}))
>>> t0 = 1_767_225_600.0
>>> def order(user, total):
...     return OrderEvent(event_id=user, ts=t0, user_id=user, order_id=user, total=total)
>>> small, big = engine.new_record(), engine.new_record()
>>> [(c.segmentation, c.current) for c in engine.learn("u1", small, [order("u1", 30.0)], t0)]
[('rfm', 'potential_loyalist'), ('lifecycle', 'new_customer')]
>>> _ = engine.learn("u2", big, [order("u2", 300.0)], t0)

F and M follow the population: once its quantiles are refreshed, a first order scores F=1 (the
lowest tie group) whatever it cost: a new customer.

>>> sorted(engine.refresh_population())
['u1', 'u2']
>>> [(c.user_id, c.previous, c.current) for c in engine.rescore("u2", big, t0)]
[('u2', 'potential_loyalist', 'new_customers')]

Time alone moves a quiet customer on; the record says when to look again.

>>> small.review_at - t0 == 86_400 + 1  # midnight: the rule vip reads a 365-day window
True
>>> [(c.segmentation, c.previous, c.current)  # doctest: +NORMALIZE_WHITESPACE
...  for c in engine.review("u1", small, t0 + 50 * 86_400)]
[('rfm', 'potential_loyalist', 'about_to_sleep'), ('lifecycle', 'new_customer', 'lapsing'),
 ('one_time_buyers', None, 'one_time_buyers')]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from features.errors import InvariantBroken
from features.events import ShopEvent
from features.money import Currencies
from features.profile import DAY, UserFeatures
from segmenter.behavior import BehaviorModel, BehaviorSegmentation, StatsDelta
from segmenter.demographics import AgeBandSegmentation, CountrySegmentation
from segmenter.kpis import KpiCounter
from segmenter.lifecycle import LifecycleSegmentation
from segmenter.population import CustomerValues, Population
from segmenter.records import Placement, SegmentChange, UserRecord
from segmenter.rfm import RfmSegmentation
from segmenter.rule_segmentation import RuleSegmentation
from segmenter.settings import Settings
from segmenter.value_tiers import ValueTierSegmentation

__all__ = ["SegmentChange", "SegmentEngine", "Segmentation", "UserRecord"]


class Segmentation(Protocol):
    """One way of cutting users into segments; a user is in at most one segment of each."""

    name: str

    def predict_one(self, features: Mapping[str, float]) -> str | None: ...

    def review_after_days(self, features: Mapping[str, float], now: float) -> float | None: ...

    def descriptions(self) -> dict[str, str]: ...


class SegmentEngine:
    """Holds the segmentations and applies them to user records."""

    def __init__(self, settings: Settings,
                 partition_of: Callable[[str], int] = lambda user_id: 0) -> None:
        """``partition_of``: a user's input partition (the shop-wide population is counted
        per partition, so that partitions can move between workers)."""
        self.params = settings.features.params()
        self.currencies = Currencies(settings.features.currency, settings.features.exchange_rates)
        #: What segments' KPIs the engine's work adds up to, taken with each write.
        self.kpis = KpiCounter()
        config = settings.segmentations
        self.population = Population(partition_of)
        self._refreshed_size, self._refreshed_at = 0, -math.inf
        self._refresh_every_s = config.rfm.quantile_refresh_s
        #: Segmentation -> minimum dwell in seconds (rule segments, against flapping).
        self.dwell: dict[str, float] = {}
        self.segmentations: list[Segmentation] = [
            RfmSegmentation(config.rfm, self.population),
            LifecycleSegmentation(config.lifecycle),
        ]
        if config.demographics.country:
            self.segmentations.append(CountrySegmentation())
        if config.demographics.age_bands:
            self.segmentations.append(AgeBandSegmentation(config.demographics.age_bands))
        for rule in settings.rules:
            self.segmentations.append(RuleSegmentation(rule, self.params))
            minutes = rule.min_dwell_minutes
            self.dwell[rule.name] = 60 * (config.rules.min_dwell_minutes if minutes is None
                                          else minutes)
        #: A rule reads category interests: the features it sees carry them.
        self.reads_interests = any(rule.reads_interests for rule in settings.rules)
        self.fingerprint = settings.segments_fingerprint()
        behavior = config.behavior
        self.behavior = (BehaviorSegmentation(behavior.learn_sample, config.value.enabled)
                         if behavior.enabled else None)
        #: A placed user's next look at their behaviour segment (the second past the edge).
        self.behavior_review_s = behavior.review_days * DAY + 1.0
        #: Customer value tiers: the value model comes with the behaviour model's versions.
        self.value_tiers = ValueTierSegmentation(config.value)
        #: Fingerprint of the current value model ("" none).
        self.valued_with = ""
        if behavior.enabled and config.value.enabled:
            self.segmentations.append(self.value_tiers)

    def use_model(self, model: BehaviorModel) -> bool:
        """Predict with a new model version; whether anyone's segments may change with it
        (its centres or its value model differ from the current ones)."""
        if self.behavior is None:
            raise RuntimeError("a behaviour model arrived with the behaviour segmentation off")
        moved = (not model.same_centres(self.behavior.model)
                 or model.value != self.value_tiers.model)
        self.behavior.model = model
        self.value_tiers.model = model.value
        self.valued_with = "" if model.value is None else model.value.fingerprint()
        return moved

    def new_record(self) -> UserRecord:
        return UserRecord(UserFeatures(self.params))

    def load_record(self, data: bytes) -> UserRecord:
        return UserRecord.from_bytes(data, self.params)

    @property
    def open_ended(self) -> list[str]:
        """Segmentations whose segments are not known in advance (one per country)."""
        return [s.name for s in self.segmentations if getattr(s, "open_ended", False)]

    def catalogue(self) -> dict[str, dict[str, str]]:
        """Segmentation -> segment -> description, for segment profiles."""
        catalogue = {s.name: s.descriptions() for s in self.segmentations}
        if self.behavior is not None:
            model = self.behavior.model
            catalogue["behavior"] = {} if model is None else model.descriptions()
        return catalogue

    def keeps_placement(self, record: UserRecord | Placement) -> bool:
        """Whether the current behaviour model leaves the user where they are with nothing to
        evaluate: the same value model and segment settings as when they were placed, events
        all evaluated, and the vector they contribute (the one the trainer's churn budget
        counts) still nearest their segment (see :mod:`streams.runtime.model_sweep`)."""
        behavior = self.behavior
        contributed = record.behavior
        if (behavior is None or behavior.model is None or contributed is None
                or contributed[0] is None or record.unsettled is not None
                or record.valued_with != self.valued_with
                or record.evaluated_with != self.fingerprint):
            return False
        segment = contributed[0]
        return (record.segments.get("behavior") == segment
                and behavior.model.predict_one(contributed[1]) == segment)

    def reclassify(self, user_id: str, record: UserRecord, now: float) -> list[SegmentChange]:
        """Re-evaluate a user after a new behaviour model version arrived."""
        version = self.behavior.model.version if self.behavior and self.behavior.model else 0
        return self._evaluate(user_id, record, now, now, f"model@{version}")

    def learn(
        self,
        user_id: str,
        record: UserRecord,
        events: Iterable[ShopEvent],
        now: float,
        too_late: list[ShopEvent] | None = None,
        horizon: float | None = None,
    ) -> list[SegmentChange]:
        """Fold the user's new events in and re-evaluate at event time ``now``.

        Events older than ``horizon`` (by default the user's latest event less the allowed
        lateness) are not counted; they go to ``too_late``.
        """
        cause = self.fold(record, events, too_late, horizon)
        if cause is None:  # only duplicates: nothing can have changed
            return []
        return self._evaluate(user_id, record, max(now, cause.ts), cause.ts, cause.event_id)

    def fold(self, record: UserRecord, events: Iterable[ShopEvent],
             too_late: list[ShopEvent] | None = None, horizon: float | None = None,
             ) -> ShopEvent | None:
        """Fold events into the user's features without evaluating; return the latest event
        that counted (the cause of what may change), None if none did."""
        cause = None
        counts = record.features.counts
        orders, cents = counts.get("orders", 0), counts.get("monetary_cents", 0)
        for event in events:
            outcome = record.features.learn_one(event, horizon)
            if outcome == "too_late" and too_late is not None:
                too_late.append(event)
            if outcome == "accepted" and (cause is None or event.ts >= cause.ts):
                cause = event
        orders, cents = counts.get("orders", 0) - orders, counts.get("monetary_cents", 0) - cents
        if (orders or cents) and cause is not None:  # members' orders: the segments' KPIs
            record.converted += self.kpis.ordered(record.segments, record.entered,
                                                  record.converted, int(orders), int(cents),
                                                  cause.ts)
        return cause

    def defer(self, record: UserRecord, events: Iterable[ShopEvent],
              too_late: list[ShopEvent] | None = None, horizon: float | None = None) -> bool:
        """Fold events in and mark the record unsettled (evaluated later, by
        :meth:`settle_unsettled`); whether any event counted."""
        cause = self.fold(record, events, too_late, horizon)
        if cause is None:
            return False
        if record.unsettled is None or cause.ts >= record.unsettled[0]:
            record.unsettled = [cause.ts, cause.event_id]
        return True

    def settle_unsettled(self, user_id: str, record: UserRecord,
                         now: float) -> list[SegmentChange]:
        """Evaluate a user whose deferred events were folded in (``record.unsettled``)."""
        if record.unsettled is None:
            raise InvariantBroken(f"user {user_id} has nothing unsettled")
        ts, event_id = record.unsettled
        return self._evaluate(user_id, record, max(now, ts), ts, event_id)

    def review(self, user_id: str, record: UserRecord, now: float) -> list[SegmentChange]:
        """Re-evaluate a user whom time alone may have moved (``record.review_at <= now``)."""
        due = record.review_at if record.review_at is not None else now
        return self._evaluate(user_id, record, now, due, f"time@{due:.3f}")

    def rescore(self, user_id: str, record: UserRecord, now: float) -> list[SegmentChange]:
        """Re-evaluate a user after the population's quantiles moved."""
        return self._evaluate(user_id, record, now, now, f"population@{now:.3f}")

    def reconfigure(self, user_id: str, record: UserRecord, now: float) -> list[SegmentChange]:
        """Re-evaluate a user last evaluated under other settings (after a restart with a new
        rule, a removed one, or new thresholds): they apply at once, without dwell."""
        cause = f"config@{self.fingerprint}"
        names = {segmentation.name for segmentation in self.segmentations}
        if self.behavior is not None:
            names.add("behavior")
        changes = [SegmentChange(user_id, name, segment, None, now, cause,
                                 model_version=self.model_version(name),
                                 number=record.next_change())
                   for name, segment in record.segments.items() if name not in names]
        for change in changes:
            self._move(record, change.segmentation, None, now)
        return changes + self._evaluate(user_id, record, now, now, cause, dwell={})

    def merge(self, user_id: str, record: UserRecord, visitor_id: str, visitor: UserRecord,
              ts: float, cause: str) -> list[SegmentChange]:
        """Move a visitor's history into a customer's record; the visitor leaves every segment.

        The customer is evaluated when their own events are learned, right after this.
        """
        record.features.merge(visitor.features)
        record.remember(record.absorbed, visitor_id)
        return self.release(visitor_id, visitor, user_id, ts, cause)

    def release(self, visitor_id: str, visitor: UserRecord, user_id: str | None, ts: float,
                cause: str) -> list[SegmentChange]:
        """The visitor became the customer ``user_id`` (None: the user is forgotten, an
        erasure request): they leave every segment and stop counting anywhere."""
        self.population.update(visitor_id, visitor.customer, None)
        changes = [SegmentChange(visitor_id, name, segment, None, ts, cause, merged_into=user_id,
                                 model_version=self.model_version(name),
                                 number=visitor.next_change())
                   for name, segment in visitor.segments.items()]
        if self.behavior is not None:
            self.behavior.withdraw(visitor.behavior)
            self.behavior.forget(visitor_id)
            visitor.behavior = None
        for name, segment in visitor.segments.items():
            self.kpis.left(name, segment, ts, visitor.entered.get(name))
        visitor.converted.clear()
        visitor.segments.clear()
        visitor.entered.clear()
        visitor.customer = visitor.review_at = None
        return changes

    def _move(self, record: UserRecord, segmentation: str, segment: str | None,
              now: float) -> None:
        """Put the user in ``segment`` (None: none) of a segmentation, counting the KPIs."""
        previous = record.segments.get(segmentation)
        if previous is not None:
            self.kpis.left(segmentation, previous, now, record.entered.get(segmentation))
        if segment is not None:
            self.kpis.entered(segmentation, segment, now)
        record.set_segment(segmentation, segment, now)

    def model_version(self, segmentation: str) -> int | None:
        """The behaviour model version, for changes of the behaviour segmentation."""
        if segmentation != "behavior" or self.behavior is None:
            return None
        return self.behavior.model.version if self.behavior.model is not None else 0

    def absorb(self, user_id: str, record: UserRecord, visitor_id: str,
               history: UserFeatures, now: float, cause: str) -> list[SegmentChange]:
        """Fold in a visitor's history released on another worker, then re-evaluate."""
        if visitor_id in record.absorbed:  # a redelivered handoff: already counted
            return []
        record.features.merge(history)
        record.remember(record.absorbed, visitor_id)
        return self._evaluate(user_id, record, max(now, record.features.last_seen), now, cause)

    def adopt(self, user_id: str, record: UserRecord) -> None:
        """Count a stored user in the population (after a restart or a rebalance)."""
        self.population.update(user_id, None, record.customer)

    def refresh_population(self, force: bool = True) -> set[str]:
        """Recompute the quantiles; return the users whose F or M score may have changed.

        Unless forced, only when 2% of the customers (at least 1) came, went or changed their
        values since the last refresh, or ``rfm.quantile_refresh_s`` (a minute) has passed:
        every refresh can re-score whole bins of customers, so refreshing on every tick would
        cost more than it tells. Once the trainer publishes the shop-wide population, its
        versions drive the refreshes.
        """
        if self.population.shared is not None and not force:
            return set()
        size, now = self.population.size, time.monotonic()
        # Customers who came, went or moved (a second order): 2% of them shift the quantiles.
        grown = self.population.changes >= max(1, 0.02 * self._refreshed_size)
        if not (force or grown or now - self._refreshed_at >= self._refresh_every_s):
            return set()
        self._refreshed_size, self._refreshed_at = size, now
        moved = self.population.refresh()
        users: set[str] = set()
        for dimension, bins in moved.items():
            users |= self.population.users_in(dimension, bins)
        return users

    def take_statistics(self) -> StatsDelta | None:
        """What this worker changed since the last call, for the shop-wide trainer: the
        behaviour segments' member sums and sample, and the customer population's counts."""
        if self.behavior is None:
            return None
        delta = self.behavior.take_pending()
        delta.population = self.population.take_pending()
        return delta if delta else None

    def use_population(self, counts: dict[str, dict[int, int]]) -> set[str]:
        """Score F and M by the shop-wide population; return the users to re-score here."""
        users: set[str] = set()
        for dimension, bins in self.population.use_shared(counts).items():
            users |= self.population.users_in(dimension, bins)
        return users

    def _contribute(self, user_id: str, record: UserRecord) -> None:
        features = record.features
        orders = int(features.counts.get("orders", 0))
        values = None
        if orders:
            values = CustomerValues(orders, features.counts["monetary_cents"] / 100)
        self.population.update(user_id, record.customer, values)
        record.customer = values

    def _evaluate(
        self, user_id: str, record: UserRecord, now: float, ts: float, cause: str,
        dwell: Mapping[str, float] | None = None,
    ) -> list[SegmentChange]:
        """Apply every segmentation at ``now``; report what changed.

        ``dwell`` (segmentation -> seconds): a user who entered their segment less than that
        long ago stays in it for now, and is looked at again when the dwell is over.
        """
        dwell = self.dwell if dwell is None else dwell
        self._contribute(user_id, record)
        snapshot = self.features_of(record.features, now)
        # Every segmentation placed before the record changes: one that raises leaves the
        # user's segments as they were, not half moved.
        placed = [(segmentation, segmentation.predict_one(snapshot),
                   segmentation.review_after_days(snapshot, now))
                  for segmentation in self.segmentations]
        changes = []
        review_at = math.inf
        for segmentation, current, after in placed:
            name = segmentation.name
            previous = record.segments.get(name)
            dwell_until = record.entered.get(name, -math.inf) + dwell.get(name, 0.0)
            if current != previous and previous is not None and now < dwell_until:
                review_at = min(review_at, dwell_until)
            elif current != previous:
                changes.append(SegmentChange(user_id, name, previous, current, ts, cause,
                                             number=record.next_change()))
                self._move(record, name, current, now)
            if after is not None:
                # A second past the edge, so the review lands strictly beyond the threshold.
                review_at = min(review_at, now + after * DAY + 1.0)
        if self.behavior is not None and self.behavior.model is not None:
            review_at = min(review_at, now + self.behavior_review_s)
        record.review_at = review_at if math.isfinite(review_at) else None
        record.evaluated_with = self.fingerprint
        record.valued_with = self.valued_with
        record.unsettled = None
        if self.behavior is not None:
            changes += self._behave(user_id, record, snapshot, now, ts, cause)
        return changes

    def features_of(self, features: UserFeatures, now: float) -> dict[str, Any]:
        """What the segmentations read of a user at ``now``: the snapshot, the interests if a
        rule reads them, and the value model's predictions."""
        snapshot: dict[str, Any] = features.snapshot(now)
        if self.reads_interests:
            snapshot.update({"interest:" + name: share
                             for name, share in features.interests().items()})
        snapshot.update(self.value_tiers.features(snapshot))
        return snapshot

    def _behave(self, user_id: str, record: UserRecord, snapshot: Mapping[str, float],
                now: float, ts: float, cause: str) -> list[SegmentChange]:
        behavior = self.behavior
        if behavior is None:
            raise InvariantBroken("a behaviour evaluation with the behaviour segmentation off")
        current, record.behavior = behavior.assign(user_id, record.behavior, snapshot, now)
        version = behavior.model.version if behavior.model is not None else 0
        record.behavior_version = version
        previous = record.segments.get("behavior")
        if current is None or current == previous:  # no model yet: keep what the user has
            return []
        self._move(record, "behavior", current, now)
        return [SegmentChange(user_id, "behavior", previous, current, ts, cause,
                              model_version=version, number=record.next_change())]
