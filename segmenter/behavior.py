"""The ``behavior`` segmentation: users grouped by how they shop, predicted by nearest centre.

A user's behaviour vector is a handful of documented features, heavy-tailed counts and money
through ``log1p``. Distances are measured after scaling each dimension by the population's
standard deviation, so spend and views weigh alike. A :class:`BehaviorModel` is one published
version: centres with stable ids, the scale, and readable profiles. Workers only predict with
it; :mod:`segmenter.behavior_trainer` learns the next version.

>>> model = BehaviorModel(version=3, ids=["b1", "b2"],
...                       centres=[[0.0] * DIMENSIONS, [2.0] * DIMENSIONS],
...                       scale=[1.0] * DIMENSIONS)
>>> recent = {"days_since_last_order": 0.0, "days_since_last_visit": 0.0}
>>> model.predict_one(behavior_vector({**recent, "orders": 20, "monetary": 3000.0}))
'b2'
>>> model.predict_many([behavior_vector(recent)] * 2)
['b1', 'b1']
>>> BehaviorModel.from_json(model.to_json()) == model
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from segmenter.clv import ValueModel, customer_summary

#: Recency is capped: a year without a visit is as lapsed as it gets.
MAX_DAYS = 365.0


def _log(name: str) -> Callable[[Mapping[str, float]], float]:
    return lambda features: math.log1p(max(features.get(name, 0.0), 0.0))


def _days(name: str) -> Callable[[Mapping[str, float]], float]:
    def days(features: Mapping[str, float]) -> float:
        value = features.get(name, math.inf)
        return math.log1p(min(value, MAX_DAYS)) if value == value else math.log1p(MAX_DAYS)
    return days


def _share(name: str) -> Callable[[Mapping[str, float]], float]:
    return lambda features: float(features.get(name, 0.0))


#: Vector dimension -> (how it is computed from the features, phrase when high, when low).
VECTOR: dict[str, tuple[Callable[[Mapping[str, float]], float], str, str]] = {
    "orders": (_log("orders"), "buy often", "never or rarely buy"),
    "monetary": (_log("monetary"), "high spenders", "spend little"),
    "avg_order_value": (_log("avg_order_value"), "big baskets", "small baskets"),
    "page_views": (_log("page_views"), "browse a lot", "browse little"),
    "sessions": (_log("sessions"), "visit often", "visit rarely"),
    "cart_adds": (_log("cart_adds"), "fill carts", "seldom add to cart"),
    "checkouts": (_log("checkouts"), "reach checkout", "rarely reach checkout"),
    "discount_affinity": (_share("discount_affinity"), "bargain hunters", "pay full price"),
    "days_since_last_order": (_days("days_since_last_order"), "not bought for long",
                              "bought recently"),
    "days_since_last_visit": (_days("days_since_last_visit"), "gone quiet", "visited recently"),
}
DIMENSIONS = len(VECTOR)
NAMES = tuple(VECTOR)


def sample_hash(user_id: str) -> float:
    """A user's place in [0, 1) for sampling: the same on every worker and every run."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64


def behavior_vector(features: Mapping[str, float]) -> list[float]:
    """The user's point in behaviour space (unscaled), from their feature snapshot."""
    return [compute(features) for compute, _, _ in VECTOR.values()]


#: The dimensions that count days (see _days): the ones time alone moves.
DAYS_DIMENSIONS = [n for n, name in enumerate(VECTOR) if name.startswith("days_since")]


def aged(vectors: Any, days: Any) -> Any:
    """Behaviour vectors (rows) as they are ``days`` later (one number per row), without
    events: the days since the last order and visit grow, up to MAX_DAYS.

    >>> vector = behavior_vector({"days_since_last_order": 1.0, "days_since_last_visit": 364})
    >>> later = aged(np.asarray([vector]), np.asarray([2.0]))[0]
    >>> [round(math.expm1(later[n]), 6) for n in DAYS_DIMENSIONS]
    [3.0, 365.0]
    """
    vectors = np.array(vectors, dtype=float)
    columns = vectors[:, DAYS_DIMENSIONS]
    later = np.expm1(columns) + np.maximum(np.asarray(days, dtype=float), 0.0)[:, None]
    vectors[:, DAYS_DIMENSIONS] = np.log1p(np.minimum(later, MAX_DAYS))
    return vectors


@dataclass(slots=True, eq=False)
class BehaviorModel:
    """One published version of the behaviour model: what every worker predicts with."""

    version: int
    ids: list[str]
    #: One row per id, in the unscaled vector space.
    centres: Any
    #: Per-dimension population standard deviation (distances are measured in its units).
    scale: Any
    #: Per-dimension population mean (for profiles).
    mean: Any = None
    #: Segment id -> profile (name, description, size, share, key features).
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The trainer's state as of this version (member sums, last statistics offset), so that
    #: a trainer on another worker or after a restart resumes exactly here.
    training: dict[str, Any] | None = None
    #: The shop-wide customer population (dimension -> money or order bin -> customers), so
    #: that every worker scores RFM on the same quintiles.
    population: dict[str, dict[int, int]] | None = None
    #: The customer value model (predicted value and tiers), once the trainer has fitted one.
    value: ValueModel | None = None
    #: Per row, added to a user's squared distance (in standard deviations) to its centre:
    #: a segment arriving or leaving a step at a time (:mod:`segmenter.regrouping`) holds
    #: fewer users than its centre alone would give it. None: all 0.
    handicaps: Any = None
    _scaled: Any = field(init=False, repr=False)
    _rows: list[tuple[float, ...]] = field(init=False, repr=False)
    _inverse_scale: list[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.centres = np.asarray(self.centres, dtype=float).reshape(len(self.ids), DIMENSIONS)
        self.scale = np.maximum(np.asarray(self.scale, dtype=float), 1e-9)
        self.mean = (np.zeros(DIMENSIONS) if self.mean is None
                     else np.asarray(self.mean, dtype=float))
        self._scaled = self.centres / self.scale
        # Plain lists for predict_one: numpy's per-call overhead outweighs a few centres' sums.
        self._rows = [tuple(row) for row in self._scaled.tolist()]
        self._inverse_scale = (1.0 / self.scale).tolist()
        if self.handicaps is not None:
            self.handicaps = np.asarray(self.handicaps, dtype=float).reshape(len(self.ids))
            if not self.handicaps.any():
                self.handicaps = None

    def predict_one(self, vector: Sequence[float]) -> str:
        """The id of the nearest centre."""
        point = [value * inverse for value, inverse in zip(vector, self._inverse_scale,
                                                            strict=True)]
        distances = [math.dist(row, point) for row in self._rows]
        if self.handicaps is not None:
            distances = [d * d + h for d, h in zip(distances, self.handicaps.tolist(),
                                                   strict=True)]
        return self.ids[distances.index(min(distances))]

    def predict_many(self, vectors: Any) -> list[str]:
        """Nearest centre ids for a batch of vectors (one row each): one matrix operation."""
        rows, _ = self.nearest(vectors)
        return [self.ids[i] for i in rows]

    def sizes(self, vectors: Any) -> dict[str, float]:
        """How many of ``vectors`` (rows) each segment would get."""
        labels = self.predict_many(vectors) if len(vectors) else []
        return {segment: float(labels.count(segment)) for segment in self.ids}

    def nearest(self, vectors: Any) -> tuple[Any, Any]:
        """Each vector's nearest centre (row) and its distance, in standard deviations."""
        points = np.asarray(vectors, dtype=float).reshape(-1, DIMENSIONS) / self.scale
        squares = ((points[:, None, :] - self._scaled[None, :, :]) ** 2).sum(axis=2)
        rows = (squares if self.handicaps is None
                else squares + self.handicaps[None, :]).argmin(axis=1)
        return rows, np.sqrt(squares[np.arange(len(rows)), rows])

    def descriptions(self) -> dict[str, str]:
        return {segment: profile.get("description", "")
                for segment, profile in self.profiles.items()}

    def to_json(self) -> bytes:
        return orjson.dumps({
            "version": self.version, "ids": self.ids, "centres": self.centres.tolist(),
            "scale": self.scale.tolist(), "mean": self.mean.tolist(),
            "profiles": self.profiles, "training": self.training,
            "population": self.population,
            "value": None if self.value is None else self.value.to_dict(),
            "handicaps": None if self.handicaps is None else self.handicaps.tolist(),
        }, option=orjson.OPT_NON_STR_KEYS)

    @classmethod
    def from_json(cls, data: bytes) -> BehaviorModel:
        state = orjson.loads(data)
        population = {d: {int(i): n for i, n in bins.items()}
                      for d, bins in (state.get("population") or {}).items()}
        return cls(state["version"], state["ids"], state["centres"], state["scale"],
                   state["mean"], state["profiles"], state.get("training"), population or None,
                   ValueModel.from_dict(state["value"]) if state.get("value") else None,
                   state.get("handicaps"))

    def same_centres(self, other: BehaviorModel | None) -> bool:
        """Whether ``other`` places users exactly as this version does."""
        return (other is not None and other.ids == self.ids
                and np.array_equal(other.centres, self.centres)
                and np.array_equal(other.scale, self.scale)
                and np.array_equal(_zeros(other.handicaps, self.ids),
                                   _zeros(self.handicaps, self.ids)))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, BehaviorModel) and self.version == other.version
                and self.ids == other.ids and np.allclose(self.centres, other.centres)
                and np.allclose(self.scale, other.scale)
                and np.allclose(_zeros(self.handicaps, self.ids),
                                _zeros(other.handicaps, self.ids)))

    __hash__ = None  # type: ignore[assignment]


def _zeros(handicaps: Any, ids: list[str]) -> Any:
    return np.zeros(len(ids)) if handicaps is None else handicaps


def describe(centre: Any, mean: Any, scale: Any, size: float, total: float) -> dict[str, Any]:
    """A readable profile of one centre: how it differs from the population, in words.

    >>> mean, scale = np.zeros(DIMENSIONS), np.ones(DIMENSIONS)
    >>> centre = mean.copy()
    >>> centre[NAMES.index("monetary")], centre[NAMES.index("orders")] = 3.0, 1.5
    >>> profile = describe(centre, mean, scale, size=30, total=120)
    >>> profile["name"], profile["share"]
    ('high spenders, buy often', 0.25)
    """
    z = (np.asarray(centre) - np.asarray(mean)) / np.maximum(np.asarray(scale), 1e-9)
    values = {NAMES[i]: _natural(NAMES[i], float(centre[i])) for i in range(DIMENSIONS)}
    buyers = values["orders"] >= 0.5
    # For people who do not buy, what they do matters; their spend follows from not buying.
    said = set() if buyers else PURCHASE_DIMENSIONS
    order = [i for i in np.argsort(-np.abs(z)) if NAMES[i] not in said]
    phrases = [VECTOR[NAMES[i]][1] if z[i] > 0 else VECTOR[NAMES[i]][2]
               for i in order[:3] if abs(z[i]) >= 0.5]
    if not buyers:
        lead = ["abandon carts", "never buy"] if values["cart_adds"] >= 1 else ["never buy"]
        phrases = lead + [p for p in phrases if p not in CART_PHRASES or not lead[1:]]
        phrases = phrases[:3]
    name = ", ".join(phrases) if phrases else "average shoppers"
    key = ", ".join(f"{NAMES[i]} {values[NAMES[i]]:g}" for i in order[:4])
    return {
        "name": name,
        "description": f"{name[0].upper()}{name[1:]} (typical: {key})",
        "size": round(size),
        "share": round(size / total, 4) if total else 0.0,
        "key_features": values,
    }


#: What follows from buying or not; not worth saying of people who never buy.
PURCHASE_DIMENSIONS = frozenset({"orders", "monetary", "avg_order_value",
                                 "days_since_last_order", "discount_affinity"})
CART_PHRASES = frozenset({"fill carts", "reach checkout"})
#: Dimensions taken as they are (shares 0-1); the others went through log1p.
SHARES = frozenset({"discount_affinity"})


def _natural(name: str, value: float) -> float:
    """A centre coordinate back in the feature's own unit, rounded for people."""
    return round(value, 2) if name in SHARES else round(math.expm1(value), 1)


@dataclass(slots=True)
class StatsDelta:
    """A worker's contribution since it last sent: per segment [count, sum, sum of squares]."""

    deltas: dict[str, list[Any]] = field(default_factory=dict)
    #: User id -> latest vector (None: the user is gone), for the trainer's reservoir.
    sample: dict[str, list[float] | None] = field(default_factory=dict)
    #: Whole customer bin counts of changed partitions: partition -> dimension -> bin -> n.
    population: dict[int, dict[str, dict[int, int]]] = field(default_factory=dict)
    #: User id -> customer summary (:func:`segmenter.clv.customer_summary`; None: gone), for
    #: the sampled users who ordered: what the trainer fits the value model on.
    customers: dict[str, list[float] | None] = field(default_factory=dict)
    #: User id -> the event time their sampled vector is as of (the trainer ages the days
    #: since the last order and visit from there, to judge whom a step moves today).
    sampled_at: dict[str, float] = field(default_factory=dict)

    def add(self, segment: str, vector: list[float], sign: int) -> None:
        entry = self.deltas.get(segment)
        if entry is None:
            entry = self.deltas[segment] = [0, np.zeros(DIMENSIONS), np.zeros(DIMENSIONS)]
        point = np.asarray(vector)
        entry[0] += sign
        entry[1] += sign * point
        entry[2] += sign * point * point

    def __bool__(self) -> bool:
        return bool(self.deltas or self.sample or self.population or self.customers)

    def to_json(self) -> bytes:
        return orjson.dumps({
            "deltas": {s: [n, a.tolist(), b.tolist()] for s, (n, a, b) in self.deltas.items()},
            "sample": self.sample,
            "population": self.population,
            "customers": self.customers,
            "sampled_at": self.sampled_at,
        }, option=orjson.OPT_NON_STR_KEYS)

    @classmethod
    def from_json(cls, data: bytes) -> StatsDelta:
        state = orjson.loads(data)
        population = {int(p): {d: {int(i): n for i, n in bins.items()}
                               for d, bins in dims.items()}
                      for p, dims in state.get("population", {}).items()}
        return cls({s: [n, np.asarray(a), np.asarray(b)] for s, (n, a, b) in
                    state["deltas"].items()}, state["sample"], population,
                   state.get("customers", {}), state.get("sampled_at", {}))


class BehaviorSegmentation:
    """Predicts with the current model version and notes each user's contribution to it.

    ``pending`` collects, until the worker sends it, how the members of each segment changed;
    users outside the learning sample (``learn_sample``, by a hash of the id) are predicted
    but do not train the model.
    """

    name = "behavior"

    def __init__(self, learn_sample: float = 1.0, send_customers: bool = False) -> None:
        """``send_customers``: sampled customers' summaries go with their vectors (for the
        trainer's value model)."""
        self.model: BehaviorModel | None = None
        self.learn_sample = learn_sample
        self.send_customers = send_customers
        self.pending = StatsDelta()

    def learns(self, user_id: str) -> bool:
        return self.learn_sample >= 1.0 or sample_hash(user_id) < self.learn_sample

    def assign(self, user_id: str, contributed: list[Any] | None,
               features: Mapping[str, float], now: float = 0.0,
               ) -> tuple[str | None, list[Any] | None]:
        """The user's segment, and their new contribution ``[segment, vector]`` (None: the
        user does not learn); ``now``: the evaluation's event time (for the sample)."""
        vector = behavior_vector(features)
        segment = None if self.model is None else self.model.predict_one(vector)
        learns = self.learns(user_id)
        # The same segment and vector again (a new version re-places every user, most of them
        # where they were): taking the contribution out and adding it back would change the
        # sums by rounding only, and cost a sixth of re-placing a user.
        unchanged = learns and contributed == [segment, vector]
        if not unchanged:
            self.withdraw(contributed)
        if not learns:
            # No contribution: withdrawing one never added (when the user merges into a
            # customer) corrupted the members' sums, and with them every centre and the scale.
            # One stored while learn_sample was larger was just taken out.
            return segment, None
        if segment is not None and not unchanged:
            self.pending.add(segment, vector, +1)
        below = 1.0 if self.model is None else (self.model.training or {}).get(
            "sample_below", 1.0)
        if sample_hash(user_id) < below:  # in the trainer's reservoir: keep it current
            self.pending.sample[user_id] = vector
            self.pending.sampled_at[user_id] = now
            customer = customer_summary(features, now) if self.send_customers else None
            if customer is not None:
                self.pending.customers[user_id] = customer
        return segment, [segment, vector]

    def forget(self, user_id: str) -> None:
        """The user is gone (merged into a customer): out of the trainer's reservoir too."""
        self.pending.sample[user_id] = None
        self.pending.customers[user_id] = None

    def withdraw(self, contributed: list[Any] | None) -> None:
        """Take a user's earlier contribution out (they moved, changed, or were merged)."""
        if contributed and contributed[0] is not None:
            self.pending.add(contributed[0], contributed[1], -1)

    def take_pending(self) -> StatsDelta:
        pending, self.pending = self.pending, StatsDelta()
        return pending
