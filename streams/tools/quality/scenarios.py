"""Harder data for `segmenter quality`: shoppers whose kinds overlap (mixed habits and noise).

The planted scenario of :mod:`streams.tools.quality.report` has six well-separated kinds. Here
half of the users blend two personas and everyone makes a few noise visits
(:func:`streams.tools.traffic.mixed.plan_mixed_events`), so the kinds overlap: no grouping can
match the planted personas exactly. The targets are the stability rules: the workers' segments
agree with offline scikit-learn KMeans on the same vectors (ARI >= 0.95), and each version that
keeps the grouping moves at most 1% of the users with no new events since the previous one.

>>> from segmenter.settings import load_settings
>>> figures = overlap_figures(load_settings(environ={}), users=600, seed=3)
>>> figures.users, figures.mixed > 0, 0.0 <= figures.worst_step <= 1.0
(600, True, True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from segmenter.settings import Settings
from streams.tools.quality.harness import (
    ShopRun,
    ari_against_offline_kmeans,
    ari_against_personas,
)
from streams.tools.traffic.mixed import plan_mixed_events

END = 1_767_225_600.0  # 2026-01-01


@dataclass(frozen=True, slots=True)
class OverlapFigures:
    """What the overlapping scenario measured (see :func:`overlap_figures`)."""

    users: int
    events: int
    #: Users whose habits blend two personas.
    mixed: int
    segments: int
    versions: int
    #: Versions after the last event, until the model stopped changing.
    settle_versions: int
    #: ARI of the workers' segments against offline KMeans on the same vectors (target >= 0.95).
    ari_offline: float
    #: ARI against the planted (main) personas: for information, it cannot be 1 with overlap.
    ari_planted: float
    #: Per version that kept the grouping: the share of quiet users it moved (worst, how many
    #: versions above 1%, of how many).
    worst_step: float
    steps_over: int
    steps: int
    #: Versions whose ids changed (a refit taken, a segment merged away).
    regroupings: int
    seconds: float


#: Rounds of training without new events after the last one: enough for the centres to reach
#: their members' means at max_churn a version (the workers' trainer never stops; a version
#: every publish_interval_s).
SETTLE_ROUNDS = 400


def overlap_figures(settings: Settings, users: int, seed: int, days: float = 90.0,
                    mixed_share: float = 0.5) -> OverlapFigures:
    """Play the overlapping shop through one simulated worker, let it settle, measure it."""
    started = time.perf_counter()
    events, plans, seconds = plan_mixed_events(users, days, seed, END, mixed_share=mixed_share)
    run = ShopRun(settings, workers=1)
    run.feed(events)
    fed = run.model.version if run.model is not None else 0
    run.settle(SETTLE_ROUNDS)
    placed = run.assignments()
    clusters = len(run.model.ids) if run.model is not None else 1
    steps = [moved / quiet for _, moved, quiet, regroup in run.version_churn if not regroup]
    return OverlapFigures(
        users=users, events=len(events),
        mixed=sum(1 for second in seconds.values() if second is not None),
        segments=clusters, versions=run.model.version if run.model is not None else 0,
        settle_versions=(run.model.version if run.model is not None else 0) - fed,
        ari_offline=ari_against_offline_kmeans(placed, run.vectors(), clusters),
        ari_planted=ari_against_personas(placed, plans),
        worst_step=max(steps, default=0.0), steps_over=sum(1 for s in steps if s > 0.01),
        steps=len(steps), regroupings=sum(1 for *_, regroup in run.version_churn if regroup),
        seconds=time.perf_counter() - started)


def print_overlap(settings: Settings, users: int, seed: int) -> OverlapFigures:
    figures = overlap_figures(settings, users, seed)
    print(f"overlap      {figures.mixed:,} of {figures.users:,} users blend two personas "
          f"(main kept 60-90%), everyone ~1 noise visit; {figures.events:,} events, "
          f"{figures.segments} segments, version {figures.versions} ({figures.settle_versions} "
          f"after the last event, to settle), {figures.seconds:.1f} s")
    print(f"             ARI vs scikit-learn KMeans offline {figures.ari_offline:.4f} (target "
          f">= 0.95); vs planted main personas {figures.ari_planted:.4f} (cannot be 1); per "
          f"version that kept the grouping: worst {figures.worst_step:.2%}, "
          f"{figures.steps_over} of {figures.steps} above 1%; regroupings {figures.regroupings}")
    return figures


__all__ = ["OverlapFigures", "overlap_figures", "print_overlap"]
