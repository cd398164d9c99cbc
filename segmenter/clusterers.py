"""The behaviour model's clustering as a River estimator, and the rules it shares with the
distributed trainer (:mod:`segmenter.behavior_trainer`): k-means++ seeding, keeping cluster ids
across refits, and measuring how many points a new grouping moves.

:class:`SeededKMeans` is the model on one stream of vectors: k-means++ (scikit-learn, several
restarts) on a uniform sample once ``warmup`` points came, then each point moves its nearest
centre to the running mean of the points it took (MacQueen's online k-means). ADWIN (River's
drift detector) watches the points' distances to their centres; when they drift, a fresh
k-means++ fit on the sample replaces the centres if it groups the sample differently, and a
new group keeps the label of the old one whose points it mostly holds, so a label stays with
its group. In the workers the same model is learned from every worker's sufficient statistics by
the trainer; ``segmenter quality`` compares both with River's own clusterers on one stream.

It takes dicts, so it sits behind River's online scaling in a pipeline:

>>> from river import compose, preprocessing
>>> model = compose.Pipeline(preprocessing.StandardScaler(),
...                          SeededKMeans(n_clusters=2, warmup=20, seed=1))
>>> import random
>>> rng = random.Random(0)
>>> for n in range(200):
...     centre = 10.0 * (n % 2)
...     model.learn_one({"spend": centre + rng.gauss(0, 1), "visits": rng.gauss(0, 1)})
>>> model.predict_one({"spend": 0.3, "visits": 0.0}) != model.predict_one({"spend": 9.8,
...                                                                          "visits": 0.1})
True
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
from river import base
from river.drift import ADWIN
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score


def kmeans_plus_plus(points: Any, clusters: int | Sequence[int], seed: int,
                     restarts: int = 5) -> tuple[Any, Any]:
    """Centres and labels of k-means++ with ``restarts``; ``clusters``: a number, or the
    numbers to try, the one with the best silhouette taken."""
    options = [clusters] if isinstance(clusters, int) else list(clusters)
    best: tuple[float, Any, Any] | None = None
    for k in options:
        if k >= len(points):
            break
        fit = KMeans(k, init="k-means++", n_init=restarts, random_state=seed)
        labels = fit.fit_predict(points)
        score = 0.0 if len(options) == 1 else silhouette_score(
            points, labels, sample_size=min(2000, len(points)), random_state=seed)
        if best is None or score > best[0]:
            best = (score, fit.cluster_centers_, labels)
    if best is None:
        raise ValueError(f"{len(points)} points are too few for {options[0]} clusters")
    return best[1], best[2]


def inertia(points: Any, centres: Any) -> float:
    """Sum of squared distances from each point to its nearest centre."""
    return float(((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2).min(axis=1).sum())


def _shared_points(before: Sequence[Any], after: Sequence[Any]) -> tuple[list, list, Any]:
    """The old labels, the new ones, and how many points each pair shares (a row per old)."""
    rows = sorted(set(before), key=str)
    cols = sorted(set(after), key=str)
    row_of = {label: n for n, label in enumerate(rows)}
    col_of = {label: n for n, label in enumerate(cols)}
    table = np.zeros((len(rows), len(cols)))
    for a, b in zip(before, after, strict=True):
        table[row_of[a], col_of[b]] += 1
    return rows, cols, table


#: The share of an old group's points a new group must hold to continue it (keep its label).
SURVIVAL = 0.5


def match_ids(before: Sequence[Any], after: Sequence[Any]) -> dict[Any, Any]:
    """For the labels of a new grouping, the old label each continues: ``before`` and
    ``after`` label the same points. Old and new groups are paired one to one by their shared
    points (Hungarian method); a new group continues an old one if it holds at least
    :data:`SURVIVAL` of the old group's points (a group "survives" as in MONIC, Spiliopoulou
    et al. 2006). A group that lost most of its points, or a new kind, gets no old label.
    Membership, not centre distance, decides: a centre that moved far while its members
    stayed keeps its label."""
    rows, cols, table = _shared_points(before, after)
    sizes = table.sum(axis=1)
    matched = {}
    for row, col in zip(*linear_sum_assignment(-table), strict=True):
        if table[row, col] > 0 and table[row, col] >= SURVIVAL * sizes[row]:
            matched[cols[col]] = rows[row]
    return matched


def moved_share(before: Sequence[Any], after: Sequence[Any], match: bool = False) -> float:
    """Share of points labelled differently. ``match``: the labels of the two groupings are
    first paired one to one by their overlap (a fresh fit's labels are not the old ones)."""
    if not before:
        return 0.0
    if not match:
        return sum(1 for a, b in zip(before, after, strict=True) if a != b) / len(before)
    _, _, table = _shared_points(before, after)
    matched_rows, matched_cols = linear_sum_assignment(-table)
    return 1.0 - table[matched_rows, matched_cols].sum() / len(before)


class SeededKMeans(base.Clusterer):
    """k-means seeded by k-means++ on a sample, moved online, re-seeded on drift.

    Parameters
    ----------
    n_clusters
        Number of clusters of the first fit and of every re-fit.
    warmup
        Points seen before the first fit (until then every point is in cluster 0).
    sample_size
        Points kept (a uniform sample of the stream) for the fits.
    drift_delta
        ADWIN's confidence over the points' distances to their centres.
    min_regroup
        A re-fit replaces the centres only if it labels more than this share of the sample
        differently (else the grouping is the same and nothing changes).
    seed
        Random seed of the sampling and the fits.

    Attributes
    ----------
    centers : dict
        Label -> centre (feature -> value), as River's clusterers expose them.
    """

    def __init__(self, n_clusters: int = 6, warmup: int = 100, sample_size: int = 2000,
                 drift_delta: float = 0.002, min_regroup: float = 0.01,
                 seed: int | None = None) -> None:
        self.n_clusters = n_clusters
        self.warmup = warmup
        self.sample_size = sample_size
        self.drift_delta = drift_delta
        self.min_regroup = min_regroup
        self.seed = seed
        self._rng = random.Random(seed)
        self._features: dict[Any, int] = {}
        self._sample: list[list[float]] = []
        self._seen = 0
        self._centres: Any = None
        self._counts: list[int] = []
        self._labels: list[int] = []
        self._next_label = 0
        self._drift = ADWIN(delta=drift_delta)
        self.refits = 0

    @property
    def centers(self) -> dict[int, dict[Any, float]]:
        if self._centres is None:
            return {}
        names = list(self._features)
        return {label: dict(zip(names, row.tolist(), strict=True))
                for label, row in zip(self._labels, self._centres, strict=True)}

    def learn_one(self, x: dict[Any, Any]) -> None:
        point = self._vector(x, grow=True)
        self._seen += 1
        self._keep(point)
        if self._centres is None:
            if (self._seen >= self.warmup and self._features
                    and len(self._sample) > self.n_clusters):
                self._seed()
            return
        row, distance = self._nearest(point)
        self._counts[row] += 1
        self._centres[row] += (point - self._centres[row]) / self._counts[row]
        self._drift.update(distance)
        if self._drift.drift_detected:
            self._refit()

    def predict_one(self, x: dict[Any, Any]) -> int:
        if self._centres is None:
            return 0
        return self._labels[self._nearest(self._vector(x))[0]]

    def _vector(self, x: dict[Any, Any], grow: bool = False) -> Any:
        if grow:
            for name in x:
                if name not in self._features:
                    self._features[name] = len(self._features)
                    self._widen()
        point = np.zeros(len(self._features))
        for name, value in x.items():
            column = self._features.get(name)
            if column is not None:
                point[column] = float(value)
        return point

    def _widen(self) -> None:
        """A feature appeared: every kept point and centre gets it, at 0."""
        self._sample = [[*row, 0.0] for row in self._sample]
        if self._centres is not None:
            self._centres = np.hstack([self._centres, np.zeros((len(self._centres), 1))])

    def _keep(self, point: Any) -> None:
        """Algorithm R: every point seen so far is in the sample with the same chance."""
        if len(self._sample) < self.sample_size:
            self._sample.append(point.tolist())
        else:
            slot = self._rng.randrange(self._seen)
            if slot < self.sample_size:
                self._sample[slot] = point.tolist()

    def _nearest(self, point: Any) -> tuple[int, float]:
        distances = np.sqrt(((self._centres - point) ** 2).sum(axis=1))
        row = int(distances.argmin())
        return row, float(distances[row])

    def _fit(self) -> tuple[Any, Any]:
        points = np.asarray(self._sample)
        return kmeans_plus_plus(points, self.n_clusters, self._rng.randrange(2**31))

    def _seed(self) -> None:
        centres, labels = self._fit()
        self._centres = np.asarray(centres, dtype=float)
        self._counts = np.bincount(labels, minlength=len(centres)).tolist()
        self._labels = list(range(len(centres)))
        self._next_label = len(centres)

    def _refit(self) -> None:
        points = np.asarray(self._sample)
        fresh, labels = self._fit()
        current = [self._nearest(point)[0] for point in points]
        if moved_share(current, labels.tolist(), match=True) <= self.min_regroup:
            return  # the same grouping: the labels stay as they are
        continued = match_ids([self._labels[row] for row in current], labels.tolist())
        new_labels = []
        for row in range(len(fresh)):
            label = continued.get(row)
            if label is None:
                label = self._next_label
                self._next_label += 1
            new_labels.append(label)
        self._centres = np.asarray(fresh, dtype=float)
        self._counts = np.bincount(labels, minlength=len(fresh)).tolist()
        self._labels = new_labels
        self.refits += 1

    @classmethod
    def _unit_test_params(cls) -> Any:
        yield {"n_clusters": 2, "warmup": 10, "seed": 42}


def _river_kmeans(clusters: int, seed: int | None = None) -> base.Clusterer:
    from river import cluster

    return cluster.KMeans(n_clusters=clusters, halflife=0.1, sigma=1.0, seed=seed)


def _streamkmeans(clusters: int, seed: int | None = None) -> base.Clusterer:
    from river import cluster

    return cluster.STREAMKMeans(chunk_size=50, n_clusters=clusters, halflife=0.5, sigma=1.0,
                                seed=seed)


def _dbstream(clusters: int, seed: int | None = None) -> base.Clusterer:
    from river import cluster

    return cluster.DBSTREAM(clustering_threshold=1.0, fading_factor=0.001, cleanup_interval=10,
                            intersection_factor=0.3, minimum_weight=1.0)


def _denstream(clusters: int, seed: int | None = None) -> base.Clusterer:
    from river import cluster

    return cluster.DenStream(decaying_factor=0.01, beta=0.5, mu=2.5, epsilon=0.5,
                             n_samples_init=100)


def _clustream(clusters: int, seed: int | None = None) -> base.Clusterer:
    from river import cluster

    return cluster.CluStream(n_macro_clusters=clusters, max_micro_clusters=50, time_gap=500,
                             seed=seed)


#: The clusterers ``segmenter quality --compare`` runs on one stream: name -> (number of
#: clusters, seed) -> a River clusterer (those without a number of clusters find their own).
CANDIDATES: dict[str, Any] = {
    "seeded_kmeans": lambda clusters, seed=None: SeededKMeans(clusters, seed=seed),
    "river_kmeans": _river_kmeans,
    "streamkmeans": _streamkmeans,
    "dbstream": _dbstream,
    "denstream": _denstream,
    "clustream": _clustream,
}


class OnlineCentres:
    """One of :data:`CANDIDATES` behind River's online scaling, learning the trainer's sampled
    vectors one at a time (``segmentations.behavior.algorithm``): its cluster centres, back in
    the vectors' own units, are what the trainer publishes instead of its own.

    >>> import random
    >>> online = OnlineCentres("river_kmeans", clusters=2, names=("spend", "visits"), seed=1)
    >>> rng = random.Random(0)
    >>> online.learn([[10.0 * (n % 2) + rng.gauss(0, 1), rng.gauss(0, 1)] for n in range(400)])
    >>> sorted(round(row[0]) for row in online.centres())
    [0, 10]
    """

    def __init__(self, algorithm: str, clusters: int, names: Sequence[str],
                 seed: int | None) -> None:
        from river import compose, preprocessing

        self.names = tuple(names)
        self.scaler = preprocessing.StandardScaler()
        self.clusterer = CANDIDATES[algorithm](clusters, seed=seed)
        self.model = compose.Pipeline(self.scaler, self.clusterer)

    def learn(self, vectors: Sequence[Sequence[float]]) -> None:
        for vector in vectors:
            self.model.learn_one(dict(zip(self.names, vector, strict=True)))

    def centres(self) -> Any:
        """Centres (one row each, unscaled), or None before the clusterer has two."""
        centers = list(self.clusterer.centers.values())
        if len(centers) < 2:
            return None
        means = np.array([self.scaler.means[name] for name in self.names])
        deviations = np.sqrt([max(self.scaler.vars[name], 0.0) for name in self.names])
        scaled = np.array([[centre.get(name, 0.0) for name in self.names] for centre in centers])
        return scaled * deviations + means
