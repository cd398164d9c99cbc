"""The customer population's streaming quantiles and the F/M scores they give."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from segmenter.population import CustomerValues, Population


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@settings(max_examples=60, deadline=None)
@given(spend=st.lists(st.floats(0.5, 50_000), min_size=1, max_size=300),
       q=st.sampled_from([0.2, 0.4, 0.5, 0.6, 0.8, 0.99]))
def test_money_quantiles_are_within_one_percent(spend: list[float], q: float) -> None:
    population = Population()
    for n, amount in enumerate(spend):
        population.update(f"u{n}", None, CustomerValues(1, amount))
    online, exact = population.quantile("monetary", q), exact_quantile(spend, q)
    assert abs(online - exact) <= 0.0101 * exact


def test_moving_customers_are_moved_not_added() -> None:
    rng = random.Random(3)
    population = Population()
    current: dict[str, CustomerValues] = {}
    for _ in range(5000):  # customers keep ordering: values change, the population does not grow
        user = f"u{rng.randrange(200)}"
        old = current.get(user)
        new = CustomerValues((old.orders if old else 0) + 1,
                             (old.monetary if old else 0) + rng.uniform(5, 200))
        population.update(user, old, new)
        current[user] = new
    assert population.size == len(current) == 200
    orders = [v.orders for v in current.values()]
    for q in (0.2, 0.5, 0.8):
        assert population.quantile("orders", q) == exact_quantile(orders, q)


def test_scores_follow_the_population_and_refresh_names_who_moved() -> None:
    population = Population()
    for n in range(10):
        population.update(f"u{n}", None, CustomerValues(1, 50.0))
    population.refresh()
    assert population.score("orders", 1) == 1  # everyone alike: the lowest tie group
    for n in range(5):
        population.update(f"u{n}", CustomerValues(1, 50.0), CustomerValues(3, 50.0))
    # Scores stay frozen until the next refresh: a new value ranks against the frozen state.
    assert population.score("orders", 1) == 1 and population.score("orders", 3) == 5
    moved = population.refresh()
    # One orders still score 1; three orders now rank above half the customers, not all.
    assert population.users_in("orders", moved["orders"]) == {f"u{n}" for n in range(5)}
    assert moved["monetary"] == set()  # nobody's spend moved
    assert population.score("orders", 1) == 1
    assert population.score("orders", 3) == 3  # 50% of the customers below
    population.update("u0", CustomerValues(3, 50.0), None)
    assert population.size == 9 and "u0" not in population.users_in("orders", [3])
