"""Learning the behaviour model: one trainer, fed by every worker's sufficient statistics.

Workers never change the model. Each keeps, per segment id, how the *current* vectors of its
users assigned there changed (:class:`StatsDelta`: a user who moves or whose vector changes is
taken out of one sum and put into another), plus a sample of recent vectors. The trainer adds
the deltas up, so it always holds the exact count, sum and sum of squares of every segment's
current members across all workers. From them:

1. **warm-up**: once ``warmup_users`` sampled users are in the reservoir, k-means++ with several
   restarts (scikit-learn) fits the first centres on it; with ``clusters: auto`` the number is
   the one with the best silhouette on the reservoir;
2. **incremental updates**: each new centre is its members' mean, a Lloyd step over the whole
   current population, computed from the sums alone. Ids stay with their centres;
3. **re-fits**: now and then a fresh fit on the reservoir replaces the centres if it explains
   the data clearly better (a new kind of shopper appeared); a new segment keeps the id of the
   old one whose sampled members it mostly holds;
4. segments below ``min_share`` of the users are dropped (their users go to the nearest other).
   A refit or a merge is reached a step per version, each re-placing at most ``max_churn`` of
   the sampled users (:mod:`segmenter.regrouping`); nothing else moves the centres meanwhile;
5. **customer value**: every ``value.refit_interval_s`` the value model
   (:func:`segmenter.clv.fit_value_model`) is fitted again on the customers among the sampled
   users, off the event loop like the rest, and published with the next version.

A new version is published only when a centre moved noticeably, so a settled model stays put.

>>> import numpy as np
>>> from segmenter.settings import load_settings
>>> config = load_settings(environ={}).segmentations.behavior
>>> trainer = BehaviorTrainer(config.model_copy(update={"clusters": 2, "warmup_users": 20}))
>>> rng = np.random.default_rng(0)
>>> delta = StatsDelta()
>>> for n in range(40):
...     delta.sample[f"u{n}"] = list(rng.normal(5.0 * (n % 2), 0.1, DIMENSIONS))
>>> trainer.learn(delta, offset=0)
>>> model = trainer.next_version(now=0.0)
>>> model.version, model.ids, sorted(p["size"] for p in model.profiles.values())
(1, ['b1', 'b2'], [20, 20])
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import numpy as np
from river.drift import ADWIN
from sklearn.cluster import KMeans

from features.errors import InvariantBroken
from segmenter.behavior import (
    DIMENSIONS,
    NAMES,
    BehaviorModel,
    StatsDelta,
    describe,
)
from segmenter.clusterers import OnlineCentres, inertia, kmeans_plus_plus, match_ids, moved_share
from segmenter.clv import ValueTrainer
from segmenter.regrouping import Regrouping, damped_step
from segmenter.reservoir import Reservoir
from segmenter.segmentation_settings import BehaviorSettings, ValueSettings


class BehaviorTrainer:
    """Turns merged worker statistics into model versions (runs on one worker at a time)."""

    def __init__(self, settings: BehaviorSettings, model: BehaviorModel | None = None,
                 value: ValueSettings | None = None) -> None:
        """``value``: the customer value model's settings (None: no value model)."""
        self.settings = settings
        #: The customer value model, fitted on the customers among the sampled users.
        self.value = ValueTrainer(value, model.value if model is not None else None)
        self.model = model
        self.rng = random.Random(settings.seed)
        #: A bottom-k sample of users (smallest id hashes) -> their current vector.
        self.reservoir = Reservoir(settings.reservoir_size)
        #: Segment id -> [count, sum, sum of squares] of its current members, all workers.
        self.stats: dict[str, list[Any]] = {}
        #: Offset of the last statistics message applied (for exactly-once after a restart).
        self.offset = -1
        self.next_id = 1
        #: When the centres were last fitted or checked (None: not yet in this trainer; its
        #: first round sets it, so a trainer that took a model over waits refit_interval_s
        #: too, rather than refitting at once on a clock that counts from the machine's boot).
        self.refitted_at: float | None = None
        clusters = settings.clusters if isinstance(settings.clusters, int) else (
            settings.auto_range[1])
        #: A River clusterer learning the sample, if configured instead of the trainer's own.
        self.online = (None if settings.algorithm == "trainer" else OnlineCentres(
            settings.algorithm, clusters, NAMES, settings.seed))
        #: ADWIN over changed users' distances to their centres; a change allows a refit.
        self.drift = ADWIN(delta=settings.drift_delta)
        self.drifted = False
        #: Drifts detected since this trainer started (a metric counts them).
        self.drifts = 0
        #: Users in the reservoir when the centres were last fitted or checked.
        self.fitted_on = 0
        #: Segment id -> the first round that saw its centre published (a new centre gets time
        #: to gather users).
        self.born: dict[str, float] = {}
        #: The customer population: partition -> dimension -> bin -> customers.
        self.partitions: dict[int, dict[str, dict[int, int]]] = {}
        self.population_changed = False
        #: Why the last version was made (logged with it).
        self.reason = ""
        #: A refit or merge under way, a step per version (None: none), and how many this
        #: trainer began.
        self.regrouping: Regrouping | None = None
        self.regroupings = 0
        if model is not None:
            self._resume(model)

    def _resume(self, model: BehaviorModel) -> None:
        state = model.training or {}
        self.stats = {s: [n, np.asarray(a), np.asarray(b)]
                      for s, (n, a, b) in state.get("stats", {}).items()}
        self.offset = state.get("offset", -1)
        self.next_id = state.get("next_id", len(model.ids) + 1)
        self.reservoir.sample_below = state.get("sample_below", 1.0)
        # The sample the centres were fitted on, not this trainer's (empty) one: a trainer
        # taking over must not take its refilling sample for growth and re-fit at once.
        self.fitted_on = state.get("fitted_on", self.settings.reservoir_size)
        if state.get("regrouping"):
            self.regrouping = Regrouping.from_json(state["regrouping"])
        self.partitions = {int(p): {d: {int(i): n for i, n in bins.items()}
                                    for d, bins in dims.items()}
                           for p, dims in state.get("partitions", {}).items()}

    def learn(self, delta: StatsDelta, offset: int) -> None:
        """Add one worker's statistics (``offset``: of its message; older ones are skipped)."""
        if offset <= self.offset:
            return
        self.offset = offset
        for segment, (count, total, squares) in delta.deltas.items():
            entry = self.stats.setdefault(segment, [0, np.zeros(DIMENSIONS), np.zeros(DIMENSIONS)])
            entry[0] += count
            entry[1] = entry[1] + total
            entry[2] = entry[2] + squares
        for partition, counts in delta.population.items():  # whole counts: the latest wins
            if self.partitions.get(partition) != counts:  # a new owner sends the same again
                self.partitions[partition] = counts
                self.population_changed = True
        for user_id, vector in delta.sample.items():
            if vector is None:  # the user is gone (a visitor merged into a customer)
                self.reservoir.drop(user_id)
            else:
                self.reservoir.keep(user_id, vector, delta.sampled_at.get(user_id))
        vectors = [v for v in delta.sample.values() if v is not None]
        if self.online is not None:
            self.online.learn(vectors)
        self._watch_drift(vectors)
        self.value.learn(delta.customers)

    def _watch_drift(self, vectors: list[list[float]]) -> None:
        """Feed each changed user's distance to their nearest centre (in standard deviations)
        to ADWIN: a new kind of shopper, or one kind changing habits, shifts its mean."""
        if self.model is None or not vectors:
            return
        _, distances = self.model.nearest(vectors)
        for distance in distances.tolist():
            self.drift.update(distance)
            if self.drift.drift_detected:
                self.drifted = True
                self.drifts += 1

    def next_version(self, now: float) -> BehaviorModel | None:
        """The next model version if there is one to publish, else None."""
        # First: a version published now carries it.
        refitted = self.value.fit(now, self.reservoir)
        version = self._next_grouping(now)
        if refitted and version is None and self.model is not None:
            model = self.model  # the same grouping, with the new value model
            version = self._publish(model.ids, model.centres, (model.mean, model.scale),
                                    reason="value model refitted")
        return version

    def _next_grouping(self, now: float) -> BehaviorModel | None:
        """A version for moved centres, a re-fit or a new population, else None."""
        if self.regrouping is not None:  # nothing else moves the centres meanwhile
            return self._regroup_step("regrouping")
        if self.online is not None:
            return self._online_version()
        if self.model is None:
            if len(self.reservoir) < self.settings.warmup_users:
                return None
            self.refitted_at, self.fitted_on = now, len(self.reservoir)
            centres = self._fit()
            ids = [self._new_id() for _ in centres]
            return self._publish(ids, centres, reason=f"first fit on {len(self.reservoir)} users")
        # Early on the sample grows fast and the first centres were fitted on few users:
        # look again whenever it has doubled. Later, only when the users' distances to their
        # centres drifted (ADWIN), at most every refit_interval_s: a refit is for a new
        # grouping, not a schedule.
        grown = len(self.reservoir) >= 2 * self.fitted_on
        if self.refitted_at is None:
            self.refitted_at = now
        if grown or (self.drifted and now - self.refitted_at >= self.settings.refit_interval_s):
            self.refitted_at, self.fitted_on = now, len(self.reservoir)
            self.drifted = False
            refit = self._refit(now)
            if refit is not None:
                return refit
        return self._step(now)

    def _online_version(self) -> BehaviorModel | None:
        """The configured River clusterer's centres, when they moved; matched ids. Reached
        a step per version, as a refit is: River moves its centres as it learns, unbudgeted."""
        centres = self.online.centres() if self.online is not None else None
        if centres is None or len(self.reservoir) < self.settings.warmup_users:
            return None
        model = self.model
        if model is None:
            ids = [self._new_id() for _ in centres]
            return self._publish(ids, centres, reason="first centres")
        ids = self._match(model, centres)
        if ids == model.ids and np.abs((centres - model.centres) / model.scale).max() < (
                self.settings.min_centre_shift):
            return None
        # The population's spread now: the scale's own (slow) drift comes with the first step.
        _, mean, scale = self._spread()
        return self._regroup(ids, centres, (mean, scale), "centres moved")

    def _spread(self) -> tuple[float, Any, Any]:
        """Number of users, mean and standard deviation per dimension, from all the sums."""
        count = sum(n for n, _, _ in self.stats.values())
        if count <= 0:
            points = self.reservoir.points()
            return len(points), points.mean(axis=0), points.std(axis=0)
        total = sum(a for _, a, _ in self.stats.values())
        squares = sum(b for _, _, b in self.stats.values())
        mean = total / count
        return count, mean, np.sqrt(np.maximum(squares / count - mean * mean, 0.0))

    def _step(self, now: float) -> BehaviorModel | None:
        """One Lloyd step from the members' sums; None when no centre moved noticeably."""
        model = self.model
        if model is None:
            raise InvariantBroken("a Lloyd step before the first fit")
        users, mean, scale = self._spread()
        scale = np.maximum(scale, 1e-9)
        centres = model.centres.copy()
        small = []
        for row, segment in enumerate(model.ids):
            count, total, _ = self.stats.get(segment, (0, None, None))
            if count > 0:
                centres[row] = total / count
            if self._too_small(segment, count, users, now):
                small.append(row)
        # Whether the members' means are far enough to be worth a version decides, not the
        # damped step: on overlapping kinds the step that keeps within max_churn can be shorter
        # than min_centre_shift, and the centres must still go on toward the means.
        wanted = np.abs((centres - model.centres) / scale).max()
        dropped = small[:len(model.ids) - 2]  # two segments stay, whatever their size
        if dropped:
            return self._merge(model, dropped)
        centres, scale = damped_step(model, centres, scale, self.reservoir.points(),
                                     self.settings)
        moved = np.abs((centres - model.centres) / scale).max()
        still = wanted < self.settings.min_centre_shift or moved <= 0.0
        rescaled = np.abs(scale / model.scale - 1).max()
        if (still and rescaled < 0.01
                and not self.population_changed and not self._shares_moved(model, users)):
            return None
        if still and rescaled < 0.01:
            # Only the customer population or the segments' sizes moved: the same centres,
            # so no one is re-placed.
            return self._publish(model.ids, model.centres, (model.mean, model.scale),
                                 reason="population or sizes moved")
        return self._publish(model.ids, centres, (mean, scale), reason="centres moved")

    def _merge(self, model: BehaviorModel, dropped: list[int]) -> BehaviorModel:
        """Segments too small merged away: their users go to their nearest other segment.
        The other centres and the scale stay where they are, so only the merged segments'
        users move (an undamped step taken with the merge moved a third of the shop)."""
        keep = [row for row in range(len(model.ids)) if row not in dropped]
        merged = [model.ids[row] for row in dropped]
        return self._regroup([model.ids[row] for row in keep], model.centres[keep],
                             (model.mean, model.scale), f"merging too small {merged}")

    def _shares_moved(self, model: BehaviorModel, users: float) -> bool:
        """Whether a segment's share of the users is half again or half less than its
        published profile says (its members arrive after a refit or a merge, and the profile
        must catch up; smaller swings, as when partitions move between workers, wait for the
        next version)."""
        if users <= 0:
            return False
        for segment in model.ids:
            share = float(self.stats.get(segment, (0,))[0]) / users
            published = model.profiles.get(segment, {}).get("share", 0.0)
            if abs(share - published) > max(0.01, 0.5 * published):
                return True
        return False

    def _too_small(self, segment: str, count: float, users: float, now: float) -> bool:
        """Below min_share once its users had time to arrive (a few publishing rounds)."""
        # Timed from the first round after its version went out, not from the fit: a fit
        # slowed by a loaded machine, or a trainer that took the model over, would otherwise
        # judge a segment before any worker had placed a user in it (and merge it away).
        born = self.born.setdefault(segment, now)
        settled = now - born > 5 * self.settings.publish_interval_s
        return settled and users > 0 and count / users < self.settings.min_share

    def _fit(self) -> Any:
        """Fresh centres for the reservoir, k-means++ with restarts, the number of clusters
        from config or by silhouette (no ids: a fit that is not taken uses none up)."""
        points = self.reservoir.points()
        scale = np.maximum(points.std(axis=0), 1e-9)
        clusters, (low, high) = self.settings.clusters, self.settings.auto_range
        options = clusters if isinstance(clusters, int) else range(low, high + 1)
        centres, labels = kmeans_plus_plus(points / scale, options, self.settings.seed)
        shares = np.bincount(labels, minlength=len(centres)) / len(points)
        return centres[shares >= self.settings.min_share] * scale

    def _refit(self, now: float) -> BehaviorModel | None:
        """A fresh fit on the reservoir, if it is clearly better; its centres keep old ids."""
        model = self.model
        if model is None:
            raise InvariantBroken("a refit before the first fit")
        if len(self.reservoir) < self.settings.warmup_users:
            return None
        sample = self.reservoir.points()
        points = sample / model.scale
        # The current centres at their best on this sample (Lloyd from where they are), so
        # that a refit is taken for a better optimum, never for a few Lloyd steps.
        current = KMeans(len(model.ids), init=model.centres / model.scale,
                         n_init=1).fit(points).inertia_
        fresh = self._fit()
        fresh_inertia = inertia(points, fresh / model.scale)
        if fresh_inertia > (1 - self.settings.refit_gain) * current:
            return None
        before, after = model.predict_many(sample), self._labels(model, fresh)
        if moved_share(before, after, match=True) <= self.settings.max_churn:
            return None  # the same grouping: nothing worth moving anyone for
        ids = self._continued(before, after, len(fresh))
        return self._regroup(ids, fresh, (model.mean, model.scale), (
            f"refit on {len(sample)} users: inertia {fresh_inertia:.1f} < {current:.1f}"))

    def _regroup(self, ids: list[str], centres: Any, space: tuple[Any, Any],
                 reason: str) -> BehaviorModel | None:
        """Begin the regrouping from the published version to ``ids`` at ``centres`` (in
        ``space``: mean, scale), and take its first step."""
        model = self.model
        if model is None:
            raise InvariantBroken("a regrouping before the first fit")
        self.regrouping = Regrouping.between(model.ids, model.centres, ids, centres, space,
                                             self.reservoir.points())
        self.regroupings += 1
        return self._regroup_step(reason)

    def _regroup_step(self, reason: str) -> BehaviorModel | None:
        """The next version along the regrouping under way: the farthest that re-places at
        most ``max_churn`` of the sampled users (:meth:`Regrouping.advance`)."""
        path = self.regrouping
        sample = self.reservoir.points()
        if path is None or len(sample) < self.settings.warmup_users:
            return None  # too few users to tell whom a step moves: wait for the sample
        moved = path.advance(sample, self.settings.max_churn)
        if path.done:
            self.regrouping = None
        step = path.model()
        return self._publish(step.ids, step.centres, (path.mean, path.scale),
                             reason=f"{reason}: {path.s:.4f} of the way, {moved:.2%} of the "
                             "sample re-placed", shown=path.shown(), handicaps=step.handicaps)

    def _labels(self, model: BehaviorModel, centres: Any) -> list[str]:
        """The sampled users' nearest of ``centres`` (by row number, as text), in the model's
        scale."""
        rows = [str(n) for n in range(len(centres))]
        return BehaviorModel(0, rows, centres, model.scale).predict_many(self.reservoir.points())

    def _match(self, model: BehaviorModel, centres: Any) -> list[str]:
        """Ids for new centres: the id of the old segment whose sampled members each mostly
        holds, else a new one."""
        return self._continued(model.predict_many(self.reservoir.points()),
                               self._labels(model, centres), len(centres))

    def _continued(self, before: list[str], after: list[str], count: int) -> list[str]:
        """Ids for ``count`` new centres from the sampled users' old segments and their
        nearest new centres (:meth:`_labels`; :func:`segmenter.clusterers.match_ids`)."""
        continued = match_ids(before, after)
        return [continued.get(str(n)) or self._new_id() for n in range(count)]

    def _new_id(self) -> str:
        segment = f"b{self.next_id}"
        self.next_id += 1
        return segment

    def _publish(self, ids: list[str], centres: Any, space: tuple[Any, Any] | None = None,
                 reason: str = "", shown: Any = None, handicaps: Any = None) -> BehaviorModel:
        """The next version; ``space``: keep this (mean, scale) instead of the population's;
        ``reason``: why it is made, for the log (:attr:`reason`); ``shown``: the centres to
        describe the segments by, if not ``centres`` (on the way to a regrouping's)."""
        self.reason = reason
        _, mean, scale = self._spread()
        if space is not None:
            mean, scale = space
        version = 1 if self.model is None else self.model.version + 1
        sizes = {s: max(float(self.stats.get(s, (0,))[0]), 0.0) for s in ids}
        if not any(sizes.values()):  # before any member statistics: the reservoir's split
            sizes = BehaviorModel(0, ids, centres, scale).sizes(self.reservoir.points())
        total = sum(sizes.values())
        profiles = {s: describe(c, mean, scale, sizes[s], total)
                    for s, c in zip(ids, centres if shown is None else shown, strict=True)}
        stats = {s: [n, a.tolist(), b.tolist()] for s, (n, a, b) in self.stats.items()}
        training = {"stats": stats, "offset": self.offset, "next_id": self.next_id,
                    "sample_below": self.reservoir.sample_below, "partitions": self.partitions,
                    "fitted_on": self.fitted_on,
                    "regrouping": self.regrouping.to_json() if self.regrouping else None}
        population: dict[str, Counter[int]] = {}
        for dimensions in self.partitions.values():
            for dimension, bins in dimensions.items():
                population.setdefault(dimension, Counter()).update(bins)
        self.population_changed = False
        self.model = BehaviorModel(version, ids, centres, scale, mean, profiles, training,
                                   {d: dict(bins) for d, bins in population.items()} or None,
                                   self.value.model, handicaps)
        return self.model
