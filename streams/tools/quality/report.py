"""`segmenter quality`: how good the ``behavior`` segments are, in figures (not a timed test).

On the simulator's planted personas, in process (see :mod:`streams.tools.quality.harness`):

- ARI of ``behavior`` against the planted personas, and against scikit-learn KMeans fitted
  offline on the same vectors;
- relabelling churn: after the model settled, a week of new events for a tenth of the users
  makes new versions; the share of the *other* users whose segment changed;
- one worker against two: the share of users placed alike (ids matched one to one);
- drift: window shoppers start buying like bargain hunters while the others go on; how many
  shifted events until 50/80/95% of them are in the bargain hunters' segment
  (:mod:`streams.tools.quality.scenarios`);
- a new kind midway: cart abandoners arrive for the last 30 of 90 days;
- overlap: half of the users blend two personas, everyone makes noise visits; ARI against
  offline KMeans and per-version churn (``--scenario overlap``: only this);
- cost: predicting one user, predicting a batch, a trainer step, re-placing a user.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import Any

import numpy as np

from features.profile import DAY
from segmenter.behavior import BehaviorModel, behavior_vector
from segmenter.settings import Settings
from streams.tools.quality.compare import compare_clusterers
from streams.tools.quality.harness import (
    ShopRun,
    agreement,
    ari_against_offline_kmeans,
    ari_against_personas,
)
from streams.tools.quality.scenarios import print_drift, print_overlap
from streams.tools.traffic.personas import PERSONAS, UserPlan, plan_events

END = 1_767_225_600.0  # 2026-01-01


def run_quality(settings: Settings, args: argparse.Namespace) -> int:
    if args.scenario == "overlap":
        print_overlap(settings, args.users, args.seed)
        return 0
    events, plans = plan_events(args.users, args.days, args.seed, END)
    print(f"segmenter quality: {len(events):,} events from {args.users:,} simulated users "
          f"({args.days:g} days, 6 planted personas)")
    started = time.perf_counter()
    one = ShopRun(settings, workers=1)
    one.record_vectors = args.compare
    one.feed(events)
    one.settle()
    model = one.model
    if model is None:
        print(f"segmenter quality: no behaviour model from {args.users:,} users "
              f"(fewer than behavior.warmup_users?)", file=sys.stderr)
        return 1
    final = one.assignments()
    clusters = len(model.ids)
    one_seconds = time.perf_counter() - started
    print(f"model        version {model.version}, {clusters} segments, "
          f"{one_seconds:.1f} s")
    _version_churn(one)
    if args.compare:
        compare_clusterers(one, plans, clusters, args.seed)
    offline = ari_against_offline_kmeans(final, one.vectors(), clusters)
    print(f"ARI          vs planted personas {ari_against_personas(final, plans):.4f}; "
          f"vs scikit-learn KMeans offline {offline:.4f}")
    _print_profiles(one, model, plans)
    _churn(one, plans, args.seed)
    two = ShopRun(settings, workers=2, count_churn=False)
    two.feed(events)
    two.settle()
    common = set(plans)
    alike = agreement(_only(final, common), _only(two.assignments(), common))
    print(f"two workers  {alike:.2%} of users placed as by one worker; ARI of the two-worker "
          f"run vs planted personas {ari_against_personas(two.assignments(), plans):.4f}")
    print_drift(one, plans, args.seed, END + 7 * DAY)
    _new_kind(settings, args.users, args.seed)
    print_overlap(settings, args.users, args.seed)
    _costs(one, model)
    _sampled(settings, events, plans, one_seconds)
    return 0


def _sampled(settings: Settings, events: list[dict[str, Any]], plans: dict[str, UserPlan],
             full_seconds: float) -> None:
    """Learning from a quarter of the users (all are still predicted)."""
    behavior = settings.segmentations.behavior.model_copy(update={"learn_sample": 0.25})
    sampled = settings.model_copy(update={"segmentations": settings.segmentations.model_copy(
        update={"behavior": behavior})})
    started = time.perf_counter()
    run = ShopRun(sampled, workers=1)
    run.feed(events)
    run.settle()
    seconds = time.perf_counter() - started
    if run.model is None:
        print(f"sampled      learning from 25% of the users: no model, fewer learned users "
              f"than behavior.warmup_users ({behavior.warmup_users})")
        return
    print(f"sampled      learning from 25% of the users: ARI vs planted personas "
          f"{ari_against_personas(run.assignments(), plans):.4f}, {seconds:.1f} s "
          f"({seconds / full_seconds:.2f} of learning from all)")


def _version_churn(run: ShopRun) -> None:
    """Per version, the share of users without new events since the previous one that the
    version moved (the stability target: at most 1%), and the regroupings begun (a refit
    after drift or growth, a segment merged away: each taken a step per version)."""
    steps = [(version, moved / quiet) for version, moved, quiet, _ in run.version_churn]
    regroups = [f"v{version}" for version, *_, regroup in run.version_churn if regroup]
    worst = max(steps, key=lambda pair: pair[1], default=(0, 0.0))
    over = sum(1 for _, share in steps if share > 0.01)
    print(f"per version  quiet users moved: worst {worst[1]:.2%} (v{worst[0]}), {over} of "
          f"{len(steps)} versions above 1%; regroupings begun {len(regroups)} "
          f"({', '.join(regroups) or 'none'}); behaviour changes by cause {dict(run.changes)}")


def _only(assignments: dict[str, str | None], users: set[str]) -> dict[str, str | None]:
    return {user: segment for user, segment in assignments.items() if user in users}


def _print_profiles(run: ShopRun, model: BehaviorModel, plans: dict[str, UserPlan]) -> None:
    by_segment: dict[str, Counter[str]] = {segment: Counter() for segment in model.ids}
    for user, segment in run.assignments().items():
        if user in plans and segment in by_segment:
            by_segment[segment][plans[user].persona] += 1
    for segment in run.model.ids:
        profile = run.model.profiles[segment]
        top = by_segment[segment].most_common(1)
        persona, count = top[0] if top else ("-", 0)
        print(f"  {segment:<5} {profile['name']:<58} {profile['share']:>6.1%}  "
              f"{persona} {count}/{sum(by_segment[segment].values())}")


def _churn(run: ShopRun, plans: dict[str, UserPlan], seed: int) -> None:
    """New events for a tenth of the users; churn among the rest."""
    before = run.assignments()
    version = run.model.version if run.model else 0
    rng = np.random.default_rng(seed)
    active = {plan.entity_id for plan in plans.values() if rng.random() < 0.1}
    extra = plan_events(len(plans), 7, seed + 1, END + 7 * DAY)[0]
    mine = [e for e in extra if (e.get("user_id") or e.get("anonymous_id")) in active]
    run.feed(mine)
    run.settle()
    after = run.assignments()
    quiet = [u for u in before if u not in active and u in after]
    moved = sum(before[u] != after[u] for u in quiet)
    versions = (run.model.version if run.model else 0) - version
    print(f"churn        {moved}/{len(quiet)} = {moved / max(len(quiet), 1):.2%} of users "
          f"without new events changed segment over {versions} new versions "
          f"({len(mine):,} new events for {len(active)} users)")


def _new_kind(settings: Settings, users: int, seed: int) -> None:
    """A kind of shopper the shop did not have appears midway: cart abandoners arrive for the
    last 30 of 90 days. Do they get a segment of their own, and when; does the rest keep
    theirs?"""
    others = {name: 1.0 for name in PERSONAS if name != "cart_abandoner"}
    early, plans = plan_events(users, 60, seed, END - 30 * DAY, mix=others)
    late, late_plans = plan_events(users // 5, 30, seed + 1, END,
                                   mix={"cart_abandoner": 1.0})
    for event in late:  # their own ids: the two plans number users alike
        event["event_id"] = f"new-{event['event_id']}"
        for key in ("user_id", "anonymous_id"):
            if event.get(key):
                event[key] = f"new-{event[key]}"
    plans |= {f"new-{user}": plan for user, plan in late_plans.items()}
    newcomers = {f"new-{user}" for user in late_plans}
    run = ShopRun(settings, workers=1)
    run.feed(early)
    run.settle()
    before = run.assignments()
    version, fed, own = run.model.version if run.model else 0, 0, None

    def their_own() -> str | None:
        """Their segment, if 80% of them share one that none held before they came."""
        placed = run.assignments()
        segment, count = Counter(placed.get(u) for u in newcomers).most_common(1)[0]
        return segment if (segment not in set(before.values())
                           and count >= 0.8 * len(newcomers)) else None

    for n in range(0, len(late), 1000):
        run.feed(late[n:n + 1000])
        fed += len(late[n:n + 1000])
        own = their_own()
        if own:
            break
    run.settle()
    own = own or their_own()
    placed = run.assignments()
    kept = agreement(_only(before, set(before)), _only(placed, set(before)))
    steps = [moved / quiet for _, moved, quiet, _ in run.version_churn]
    regroups = sum(1 for *_, regroup in run.version_churn if regroup)
    found = (f"a segment of their own ({own}, 80% of them) after {fed:,} of {len(late):,} of "
             "their events" if own else "no segment of their own")
    clusters = len(run.model.ids) if run.model else 1
    offline = ari_against_offline_kmeans(placed, run.vectors(), clusters)
    print(f"new kind     cart abandoners arrive for the last 30 days: {found} "
          f"({(run.model.version if run.model else 0) - version} versions); the others "
          f"{kept:.2%} placed as before; ARI vs planted {ari_against_personas(placed, plans):.4f}"
          f", vs offline KMeans {offline:.4f}; per version: worst "
          f"{max(steps, default=0):.2%}, {regroups} regroupings begun")


def _costs(run: ShopRun, model: BehaviorModel) -> None:
    worker = run.workers[0]
    vectors = [behavior_vector(r.features.snapshot(worker.processor.watermark))
               for r in list(worker.store.values())[:1000]]
    started = time.perf_counter()
    for vector in vectors:
        model.predict_one(vector)
    one = (time.perf_counter() - started) / len(vectors)
    matrix = np.asarray(vectors)
    started = time.perf_counter()
    model.predict_many(matrix)
    many = (time.perf_counter() - started) / len(vectors)
    started = time.perf_counter()
    steps = 20
    for n in range(steps):
        run.trainer.next_version(run.clock + n)
    step = (time.perf_counter() - started) / steps
    sweep = run.sweep_seconds / max(run.swept, 1)
    print(f"cost         predict one user {one * 1e6:.1f} us, in a batch {many * 1e6:.2f} us "
          f"per user; trainer step {step * 1e3:.2f} ms; re-placing a user after a new version "
          f"{sweep * 1e6:.1f} us; behaviour changes {dict(run.changes)}")


__all__: list[Any] = ["run_quality"]
