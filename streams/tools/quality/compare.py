"""`segmenter quality --compare`: the behaviour model against River's own clusterers, on one
stream (not a timed test).

The stream is every user's behaviour vector each time their events changed it, in event order, from
the same simulated shop ``segmenter quality`` plays. Each candidate of
:data:`segmenter.clusterers.CANDIDATES` learns it one vector at a time behind River's online scaling
(``StandardScaler | clusterer``) and then labels every user's final vector. The workers' model (the
distributed trainer of :class:`streams.tools.quality.harness.ShopRun`) is the first row. Figures:
ARI against the planted personas and against scikit-learn KMeans fitted offline on the final
vectors, churn (users with no new vector in the second half of the stream whose label changed
between the middle and the end), vectors learned per second and the estimator's memory.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from river import compose, preprocessing

from segmenter.behavior import NAMES
from segmenter.clusterers import CANDIDATES
from streams.tools.quality.harness import ShopRun, ari_against_offline_kmeans, ari_against_personas
from streams.tools.traffic.personas import UserPlan


def compare_clusterers(run: ShopRun, plans: Mapping[str, UserPlan], clusters: int,
                       seed: int) -> None:
    stream = run.vector_stream
    final = run.vectors()
    half = len(stream) // 2
    quiet = set(final) - {user for user, _ in stream[half:]}
    print(f"compare      {len(stream):,} vector updates of {len(final):,} users; churn over "
          f"the {len(quiet):,} users with no update in the second half")
    print(f"  {'clusterer':<22}{'ARI personas':>13}{'ARI offline':>12}{'churn':>8}"
          f"{'vectors/s':>11}{'memory':>10}")
    workers = run.assignments()
    print(f"  {'workers (trainer)':<22}{ari_against_personas(workers, plans):>13.4f}"
          f"{ari_against_offline_kmeans(workers, final, clusters):>12.4f}"
          f"{'-':>8}{'-':>11}{'-':>10}")
    for name, make in CANDIDATES.items():
        model = compose.Pipeline(preprocessing.StandardScaler(), make(clusters, seed=seed))
        started = time.perf_counter()
        middle: dict[str, Any] = {}
        for n, (_, vector) in enumerate(stream):
            model.learn_one(dict(zip(NAMES, vector, strict=True)))
            if n == half:
                middle = _labels(model, {u: final[u] for u in quiet})
        seconds = time.perf_counter() - started
        labels = _labels(model, final)
        moved = sum(1 for user in quiet if middle.get(user) != labels[user])
        print(f"  {name:<22}{ari_against_personas(labels, plans):>13.4f}"
              f"{ari_against_offline_kmeans(labels, final, clusters):>12.4f}"
              f"{moved / max(1, len(quiet)):>8.1%}{len(stream) / seconds:>11,.0f}"
              f"{_memory(model):>10}")


def _labels(model: Any, vectors: Mapping[str, list[float]]) -> dict[str, Any]:
    return {user: model.predict_one(dict(zip(NAMES, vector, strict=True)))
            for user, vector in vectors.items()}


def _memory(model: Any) -> str:
    try:
        return f"{model._raw_memory_usage / 1024:,.0f} KB"
    except Exception:  # an estimator River cannot size
        return "?"
