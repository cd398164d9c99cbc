"""Bounded steps between model versions, so that each version re-places few users.

A Lloyd step toward the members' means is damped (:func:`damped_step`); a regrouping (a
refit, a merge) is a path walked a step per version (:class:`Regrouping`).

**Regroupings.** A refit that finds a clearly better grouping (a young model's segments mixed
kinds of shoppers, or a new kind appeared) was published at once: a quarter of the shop could
change segment in one version, most of them users with no new events, and marketing automation
received every move in the same minute. A :class:`Regrouping` goes from the current centres to
the fresh ones along a path on which users change segment a few at a time; each version takes
the longest step along it that re-places at most a budget of the sampled users
(:meth:`Regrouping.advance`). Every user still moves at most once or twice, to where the fresh
grouping puts them; only the pace is bounded. On the path, at ``s`` from 0 to 1:

- first, a new segment's centre is at its fresh position from the start, with a handicap
  (added to every user's squared distance to it, :attr:`BehaviorModel.handicaps`) large
  enough that it holds no one; the handicap shrinks to 0, and the segment's cell only grows
  meanwhile;
- then a segment that continues (keeps its id) moves its centre in a straight line from where
  it is to its fresh position;
- last, a segment with no successor stays where it is while its handicap grows: its cell only
  shrinks, and it is gone at the end.

A straight path for the arriving and leaving centres instead (from far away, or away) swept
users into their cells and out again: a regrouping that moved a quarter of the sampled users
at once took three quarters of them in moves, spread over 150 versions. With handicaps a user
who changes segment on the path goes where the fresh fit puts them, bar the moves of the
continuing centres. At ``s = 1`` the centres are the fresh ones, the new segments have their
ids, the old ones without a successor are dropped: the model predicts as the fresh fit does.

>>> import numpy as np
>>> from segmenter.behavior import DIMENSIONS
>>> rng = np.random.default_rng(0)
>>> sample = np.vstack([rng.normal(0, 1, (100, DIMENSIONS)),
...                     rng.normal(8, 1, (100, DIMENSIONS))])
>>> old = np.zeros((1, DIMENSIONS)) + 4          # one segment holding both kinds
>>> fresh = np.vstack([np.zeros(DIMENSIONS), np.full(DIMENSIONS, 8.0)])
>>> path = Regrouping.between(["b1"], old, ["b1", "b2"], fresh,
...                           (np.zeros(DIMENSIONS), np.ones(DIMENSIONS)), sample)
>>> versions = 0
>>> while not path.done:
...     moved = path.advance(sample, budget=0.05)
...     versions += 1
...     assert moved <= 0.05
>>> path.model().ids, versions >= 10
(['b1', 'b2'], True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segmenter.behavior import BehaviorModel
from segmenter.clusterers import moved_share
from segmenter.segmentation_settings import BehaviorSettings

#: Bisection rounds for the longest step within the budget (the last step is 2**-24 of the
#: remaining path at the finest).
SEARCH_ROUNDS = 24
MOVES, ARRIVES, LEAVES = "moves", "arrives", "leaves"
#: The step lengths tried, longest first (halving down to 1/4096), and the share of max_churn
#: each may spend. On overlapping kinds a sixteenth of a step can still cross a dense border;
#: the shorter steps let the centres go on toward their members' means instead of stopping.
#: They get a quarter of the budget (the sample's vectors lag the users' recency, and while
#: the shop is young it misjudged the quiet users such steps move by up to three times),
#: except the shortest, so that a step within max_churn is never refused.
DAMPED_STEPS = tuple((0.5 ** n, 0.25 if 4 < n < 12 else 1.0) for n in range(13))


def damped_step(model: BehaviorModel, centres: Any, scale: Any, sample: Any,
                settings: BehaviorSettings) -> tuple[Any, Any]:
    """The longest step from ``model``'s centres and scale toward these that re-places at
    most ``max_churn`` of the sampled users (none if even the shortest is too much): each
    version moves few users who did nothing, and the centres still get where the members'
    means are, over several versions."""
    if len(sample) < settings.warmup_users:
        # Too few users to tell whom a step moves (a trainer that just took over, whose
        # sample refills as users change): stay where the last version is.
        return model.centres, model.scale
    before = model.predict_many(sample)
    for step, budget in DAMPED_STEPS:
        moved = model.centres + step * (centres - model.centres)
        rescaled = model.scale + step * (scale - model.scale)
        after = BehaviorModel(0, model.ids, moved, rescaled).predict_many(sample)
        if moved_share(before, after) <= budget * settings.max_churn:
            return moved, rescaled
    return model.centres, model.scale


class Regrouping:
    """The path from one grouping to another (see the module's docstring); ``s`` is how far
    along it the last published version is."""

    def __init__(self, rows: list[tuple[str, str]], start: Any, end: Any, reach: Any,
                 space: tuple[Any, Any], s: float = 0.0) -> None:
        """``rows``: (segment id, what it does: moves, arrives or leaves); ``start`` and
        ``end``: each row's centre at either end of the path (the same for an arriving or a
        leaving row); ``reach``: per row, a squared distance (in standard deviations) beyond
        every sampled user's, the handicap that keeps a row empty; ``space``: the (mean,
        scale) of the versions on the path."""
        self.rows = rows
        self.start = np.asarray(start, dtype=float)
        self.end = np.asarray(end, dtype=float)
        self.reach = np.asarray(reach, dtype=float)
        self.mean = np.asarray(space[0], dtype=float)
        self.scale = np.maximum(np.asarray(space[1], dtype=float), 1e-9)
        self.s = s

    @classmethod
    def between(cls, old_ids: list[str], old: Any, new_ids: list[str], fresh: Any,
                space: tuple[Any, Any], sample: Any) -> Regrouping:
        """The path from centres ``old`` (ids ``old_ids``) to ``fresh`` (ids ``new_ids``: an
        old id where a fresh centre continues that segment), for ``sample`` (vectors, one per
        row); ``space``: the (mean, scale) of the versions on the path."""
        scale = np.maximum(np.asarray(space[1], dtype=float), 1e-9)
        old, fresh = np.asarray(old, dtype=float), np.asarray(fresh, dtype=float)
        points = np.asarray(sample, dtype=float).reshape(-1, len(scale)) / scale
        rows, start, end = [], [], []
        for row, segment in enumerate(new_ids):
            kind = MOVES if segment in old_ids else ARRIVES
            rows.append((segment, kind))
            start.append(old[old_ids.index(segment)] if kind == MOVES else fresh[row])
            end.append(fresh[row])
        for row, segment in enumerate(old_ids):
            if segment not in new_ids:
                rows.append((segment, LEAVES))
                start.append(old[row])
                end.append(old[row])
        reach = [(float(np.sqrt(((points - centre / scale) ** 2).sum(axis=1)).max())
                  if len(points) else 0.0) + 1.0 for centre in end]
        return cls(rows, start, end, np.square(reach), space)

    @property
    def done(self) -> bool:
        return self.s >= 1.0

    def model(self, s: float | None = None) -> BehaviorModel:
        """A version at ``s`` (default: where the path is) for predicting; the segments on
        the path then are its ids."""
        s = self.s if s is None else s
        arriving, moving, leaving = _thirds(s)
        rows = self._present(s)
        kinds = [self.rows[row][1] for row in rows]
        handicaps = [self.reach[row] * ((1 - arriving) / arriving if kind == ARRIVES else
                                        leaving / (1 - leaving) if kind == LEAVES else 0.0)
                     for row, kind in zip(rows, kinds, strict=True)]
        centres = self.start[rows] + moving * (self.end[rows] - self.start[rows])
        return BehaviorModel(0, [self.rows[row][0] for row in rows], centres, self.scale,
                             self.mean, handicaps=handicaps)

    def shown(self) -> Any:
        """Centres to describe the segments on the path by: where each is headed."""
        return self.end[self._present(self.s)]

    def _present(self, s: float) -> list[int]:
        """The rows on the path at ``s``: an arriving one once it began to arrive, a leaving
        one until it has left."""
        arriving, _, leaving = _thirds(s)
        return [row for row, (_, kind) in enumerate(self.rows)
                if not (kind == ARRIVES and arriving <= 0)
                and not (kind == LEAVES and leaving >= 1)]

    def advance(self, sample: Any, budget: float) -> float:
        """Go to the farthest point along the path that re-places at most ``budget`` of the
        sampled users from where it is; return the share it re-places. Where even the
        shortest step re-places more (many users alike), that step is taken anyway: the
        path always progresses."""
        before = self.model().predict_many(sample)

        def moved(s: float) -> float:
            return moved_share(before, self.model(s).predict_many(sample))

        low, high = self.s, 1.0
        share = moved(high)
        if share > budget:
            for _ in range(SEARCH_ROUNDS):
                middle = (low + high) / 2
                if moved(middle) <= budget:
                    low = middle
                else:
                    high = middle
            high = low if low > self.s else high
            share = moved(high)
        self.s = high
        return share

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "start": self.start.tolist(), "end": self.end.tolist(),
                "reach": self.reach.tolist(), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "s": self.s}

    @classmethod
    def from_json(cls, state: dict[str, Any]) -> Regrouping:
        return cls([(segment, kind) for segment, kind in state["rows"]], state["start"],
                   state["end"], state["reach"], (state["mean"], state["scale"]), state["s"])


def _thirds(s: float) -> tuple[float, float, float]:
    """How far the arriving, the moving and the leaving rows are at ``s``: in three thirds,
    one after the other. All at once sent the leaving segments' users to a continuing one
    first and on to a new one later, and a continuing centre moving off left its users to a
    neighbour before the new segment that is to take them had arrived: most users moved
    twice."""
    arriving, moving, leaving = (min(max(3 * s - third, 0.0), 1.0) for third in range(3))
    return arriving, moving, leaving
