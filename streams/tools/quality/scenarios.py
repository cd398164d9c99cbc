"""Harder data for `segmenter quality`: shoppers whose kinds overlap (mixed habits and noise).

The planted scenario of :mod:`streams.tools.quality.report` has six well-separated kinds. Here
half of the users blend two personas and everyone makes a few noise visits
(:func:`streams.tools.traffic.mixed.plan_mixed_events`), so the kinds overlap: no grouping can
match the planted personas exactly. The targets are the stability rules: the workers' segments
agree with offline scikit-learn KMeans on the same vectors (ARI >= 0.95), and each version that
keeps the grouping moves at most 1% of the users with no new events since the previous one.

The drift scenario (:func:`drift_figures`) plays on after the planted shop settled: one kind
starts shopping like another while the others go on; it measures how many shifted events it
takes until the drifted users sit in the segment they end in once the model settled (the model
followed the drift), and in the other kind's segment, and where they end.
``tests/test_behavior_overlap.py`` runs the overlapping shop at 1,000 users.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter

from segmenter.settings import Settings
from streams.tools.quality.harness import (
    ShopRun,
    ari_against_offline_kmeans,
    ari_against_personas,
)
from streams.tools.traffic.mixed import plan_mixed_events
from streams.tools.traffic.personas import DAY, UserPlan, plan_user
from streams.tools.traffic.simulator import shifted_events

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
    #: Per version: the share of quiet users it moved (worst, how many versions above 1%, of
    #: how many).
    worst_step: float
    steps_over: int
    steps: int
    #: Regroupings begun (a refit taken, a segment merged away), each a step per version.
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
    steps = [moved / quiet for _, moved, quiet, _ in run.version_churn]
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
          f"version: worst {figures.worst_step:.2%}, {figures.steps_over} of {figures.steps} "
          f"above 1%; regroupings begun {figures.regroupings}")
    return figures




@dataclass(frozen=True, slots=True)
class DriftFigures:
    """What the drift scenario measured (see :func:`drift_figures`)."""

    drifted: int
    #: Shifted events in the stream, and all events (the others keep shopping meanwhile).
    shifted_events: int
    events: int
    #: Share of the drifted users in the target persona's segment -> shifted events fed until
    #: it was first reached (None: not reached before the end of the stream).
    reached: dict[float, int | None]
    #: Share of the drifted users in the segment (by id) they hold once the model settled ->
    #: shifted events fed until it was first reached: how soon the model followed the drift,
    #: wherever the drifted users end (their own segment, if they became a kind of their own).
    followed: dict[float, int | None]
    #: After the stream and settling: share in the target's segment, ARI against offline
    #: KMeans over every user, versions, worst per-version churn (with how many above 1%,
    #: of how many), regroupings begun.
    joined: float
    #: After settling: the drifted users' own (most common) segment and the share they hold
    #: of it; the target's segment before and after the drift (a kept id: the same).
    drifted_segment: str | None
    drifted_share: float
    target_segments: tuple[str | None, str | None]
    ari_offline: float
    versions: int
    worst_step: float
    steps_over: int
    steps: int
    regroupings: int


#: Personas whose habits go on over the drift window. Lapsing customers stay away and new
#: visitors were one-off (their scripts, played again on a new window, would have both come
#: back: a lapsing customer ordering again is another drift).
GOING_ON = frozenset({"loyal_high_spender", "bargain_hunter", "cart_abandoner",
                      "window_shopper"})


def drift_figures(run: ShopRun, plans: Mapping[str, UserPlan], seed: int, start: float,
                  source: str = "window_shopper", target: str = "bargain_hunter",
                  days: float = 30.0) -> DriftFigures:
    """Users planted as ``source`` behave as ``target`` for ``days`` from ``start`` while
    the other users of :data:`GOING_ON` go on as planted; how soon the drifted users sit in
    the segment that holds most of the ``target`` users, and where they end."""
    end = start + days * DAY
    shift = shifted_events(plans, source, target, seed, start, end)
    # By the id they have once drifted: an anonymous window shopper who buys logs in, and
    # their visitor record is folded into the customer's.
    drifted = [plan_user(p.index, target, seed, start, end)[0].entity_id
               for p in plans.values() if p.persona == source]
    targets = [p.entity_id for p in plans.values() if p.persona == target]
    others = [event for plan in plans.values() if plan.persona in GOING_ON - {source}
              for event in plan_user(plan.index, plan.persona, seed + 2, start, end)[1]]
    for n, event in enumerate(others):
        event["event_id"] = f"{seed}-going-on-{n}"
    stream = sorted(shift + others, key=itemgetter("ts"))
    version = run.model.version if run.model is not None else 0
    target_before = _most_common_segment(run.assignments(), targets)
    churn_from = len(run.version_churn)
    fed = 0
    #: After each chunk: shifted events fed so far, the drifted users' segments, and their
    #: share in the target's segment.
    on_the_way: list[tuple[int, list[str | None], float]] = []
    for n in range(0, len(stream), 1000):
        chunk = stream[n:n + 1000]
        run.feed(chunk)
        fed += sum(1 for event in chunk if "-shift-" in event["event_id"])
        placed = run.assignments()
        on_the_way.append((fed, [placed.get(u) for u in drifted],
                           _share_in_segment_of(placed, drifted, targets)))
    run.settle(SETTLE_ROUNDS)
    placed = run.assignments()
    final = [placed.get(u) for u in drifted]
    reached = _first_reached([(fed, share) for fed, _, share in on_the_way])
    followed = _first_reached([
        (fed, sum(a == b for a, b in zip(then, final, strict=True)) / max(len(final), 1))
        for fed, then, _ in on_the_way])
    clusters = len(run.model.ids) if run.model is not None else 1
    churn = run.version_churn[churn_from:]
    drifted_segment = _most_common_segment(placed, drifted)
    members = [u for u, segment in placed.items() if segment == drifted_segment]
    steps = [moved / quiet for _, moved, quiet, _ in churn]
    return DriftFigures(
        drifted=len(drifted), shifted_events=len(shift), events=len(stream), reached=reached,
        followed=followed,
        joined=_share_in_segment_of(placed, drifted, targets),
        drifted_segment=drifted_segment,
        drifted_share=len(set(members) & set(drifted)) / max(len(members), 1),
        target_segments=(target_before, _most_common_segment(placed, targets)),
        ari_offline=ari_against_offline_kmeans(placed, run.vectors(), clusters),
        versions=(run.model.version if run.model is not None else 0) - version,
        worst_step=max(steps, default=0.0), steps_over=sum(1 for s in steps if s > 0.01),
        steps=len(steps), regroupings=sum(1 for *_, regroup in churn if regroup))


def _first_reached(shares: list[tuple[int, float]],
                   thresholds: tuple[float, ...] = (0.5, 0.8, 0.95)) -> dict[float, int | None]:
    """Threshold -> the first count whose share reached it (None: never).

    >>> _first_reached([(10, 0.4), (20, 0.85), (30, 0.9)])
    {0.5: 20, 0.8: 20, 0.95: None}
    """
    return {threshold: next((fed for fed, share in shares if share >= threshold), None)
            for threshold in thresholds}


def _most_common_segment(placed: Mapping[str, str | None], users: list[str]) -> str | None:
    return Counter(placed.get(u) for u in users).most_common(1)[0][0]


def _share_in_segment_of(placed: Mapping[str, str | None], drifted: list[str],
                         targets: list[str]) -> float:
    """Share of ``drifted`` in the segment holding most of ``targets``.

    >>> _share_in_segment_of({"a": "b1", "b": "b2", "t": "b2", "u": "b2"}, ["a", "b"], ["t", "u"])
    0.5
    """
    segment = _most_common_segment(placed, targets)
    return sum(placed.get(u) == segment for u in drifted) / max(len(drifted), 1)


def print_drift(run: ShopRun, plans: Mapping[str, UserPlan], seed: int,
                start: float) -> DriftFigures:
    figures = drift_figures(run, plans, seed, start)
    reached, followed = (", ".join(f"{share:.0%} after {'-' if fed is None else f'{fed:,}'}"
                                   for share, fed in shares.items())
                         for shares in (figures.reached, figures.followed))
    print(f"drift        {figures.drifted:,} window shoppers buy like bargain hunters for 30 "
          f"days ({figures.shifted_events:,} shifted events) while the others go on "
          f"({figures.events:,} events in all); in the segment they end in: {followed} "
          f"shifted events; in the bargain hunters' segment: {reached} "
          f"shifted events; after settling {figures.joined:.0%}; the most of them in "
          f"{figures.drifted_segment}, of which they are {figures.drifted_share:.0%}; the "
          f"bargain hunters' segment {figures.target_segments[0]} before, "
          f"{figures.target_segments[1]} after; ARI vs offline KMeans "
          f"{figures.ari_offline:.4f}; {figures.versions} versions: worst "
          f"{figures.worst_step:.2%}, {figures.steps_over} of {figures.steps} above 1%; "
          f"regroupings begun {figures.regroupings}")
    return figures


__all__ = ["DriftFigures", "OverlapFigures", "drift_figures", "overlap_figures", "print_drift",
           "print_overlap"]
