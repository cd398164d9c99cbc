"""Shoppers whose kinds overlap: each user's habits blend two planted personas, plus noise.

Every user gets a *main* persona (by the shop's usual mix) and, with probability
``mixed_share``, a *second* one with a mixing weight: the user's visits are scripted by both
personas' scripts, and each visit of the main persona is kept with probability ``weight``, each
of the second with ``1 - weight`` (the weight is drawn per user from ``weights``). On top, every
user makes a few *noise* visits (Poisson, mean ``noise_visits``): short browsing at random times
in the window, so even pure users are not exactly alike. The planted persona of a user is the
main one; with overlap no grouping can match it exactly (the scenario reports ARI against it for
information and holds the segments to offline KMeans on the same vectors instead).

Anonymous users (new visitors, anonymous window shoppers) can only mix with personas that
never order; nobody takes new visitors as a second kind. The same arguments always give the
same result.

>>> events, plans, seconds = plan_mixed_events(users=40, days=30, seed=2, end_ts=1_767_225_600.0)
>>> len(plans) == 40 and sum(1 for p in seconds.values() if p is not None) > 5
True
>>> events == plan_mixed_events(users=40, days=30, seed=2, end_ts=1_767_225_600.0)[0]
True
"""

from __future__ import annotations

import math
import random
from typing import Any

from streams.tools.traffic.personas import (
    DAY,
    PERSONAS,
    SCRIPTS,
    UserPlan,
    _browse,
    assign_personas,
    new_user,
    numbered,
)

#: Second kinds an anonymous user can take: personas whose scripts never order (an order needs
#: a ``user_id``). New visitors are never a second kind: their visits are anonymous, and a
#: known user needs a logged-in visit.
NEVER_ORDER = ("window_shopper", "cart_abandoner")


def plan_mixed_user(index: int, main: str, seed: int, start: float, end: float,
                    mixed_share: float, weights: tuple[float, float], noise_visits: float,
                    ) -> tuple[UserPlan, str | None, list[dict[str, Any]]]:
    """One user's plan, second persona (None: unmixed) and events (``event_id`` empty)."""
    rng = random.Random(f"mixed:{seed}:{index}")
    user = new_user(index, main, rng, seed, start, end)
    plan, known = user.plan, user.plan.user_id is not None
    second = None
    if rng.random() < mixed_share:
        choices = [p for p in (PERSONAS if known else NEVER_ORDER)
                   if p not in (main, "new_visitor")]
        second = rng.choice(choices)
    SCRIPTS[main](user)
    if second is not None:
        weight = rng.uniform(*weights)
        own = len(user.visits)
        SCRIPTS[second](user)
        user.visits = [visit for n, visit in enumerate(user.visits)
                       if rng.random() < (weight if n < own else 1 - weight)]
    for _ in range(_poisson(rng, noise_visits)):
        _browse(user, user.when(0, user.days), "all", (), rng.randint(1, 3), identified=known)
    return plan, second, user.events()


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method: the means here are small)."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def plan_mixed_events(users: int, days: float, seed: int, end_ts: float,
                      mixed_share: float = 0.5, weights: tuple[float, float] = (0.6, 0.9),
                      noise_visits: float = 1.0,
                      ) -> tuple[list[dict[str, Any]], dict[str, UserPlan], dict[str, str | None]]:
    """All events of ``users`` mixed-habit users over ``days`` up to ``end_ts``, their plans
    (persona: the main one) and each user's second persona (None: unmixed), by entity id.
    Events are sorted by ``ts``, each with a unique ``event_id`` ``f"{seed}-mixed-{n}"``."""
    start = end_ts - days * DAY
    plans: dict[str, UserPlan] = {}
    seconds: dict[str, str | None] = {}
    events: list[dict[str, Any]] = []
    for index, main in enumerate(assign_personas(users, seed), 1):
        plan, second, user_events = plan_mixed_user(index, main, seed, start, end_ts,
                                                    mixed_share, weights, noise_visits)
        plans[plan.entity_id] = plan
        seconds[plan.entity_id] = second
        events.extend(user_events)
    return numbered(events, f"{seed}-mixed"), plans, seconds


__all__ = ["plan_mixed_events", "plan_mixed_user"]
