"""Sessions kept as runs count exactly what every timestamp would, in any arrival order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from features.sessions import SessionCounter

GAP, LATENESS = 1800.0, 7200.0


def sessions_of(timestamps: list[float]) -> int:
    """Brute force: sorted, a new session after each gap over GAP."""
    ordered = sorted(timestamps)
    return sum(1 for n, ts in enumerate(ordered) if n == 0 or ts - ordered[n - 1] > GAP)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 40_000), min_size=1, max_size=60), st.randoms())
def test_runs_count_like_every_timestamp_in_any_order(times: list[int], rng) -> None:
    # Arrivals out of order, but never later than the lateness allows (as the features admit).
    accepted: list[float] = []
    counter = SessionCounter(GAP, LATENESS)
    shuffled = list(times)
    rng.shuffle(shuffled)
    for ts in map(float, shuffled):
        if accepted and ts < max(accepted) - LATENESS:
            continue  # too late: refused before it reaches the counter
        accepted.append(ts)
        counter.learn_one(ts)
        assert counter.count == sessions_of(accepted)
    again = SessionCounter.from_dict(counter.to_dict(), GAP, LATENESS)
    assert again.count == counter.count and again.runs == counter.runs


def test_a_record_stored_with_timestamps_reads_as_runs() -> None:
    old = {"closed": 1, "closed_last_ts": 100.0, "open_ts": [5000.0, 5600.0, 9000.0]}
    counter = SessionCounter.from_dict(old, GAP, LATENESS)
    assert counter.runs == [[5000.0, 5600.0], [9000.0, 9000.0]] and counter.count == 3


def test_a_merged_visitor_s_run_bridges_the_customer_s_sessions() -> None:
    customer, visitor = SessionCounter(GAP, LATENESS), SessionCounter(GAP, LATENESS)
    for ts in (0.0, 3000.0):
        customer.learn_one(ts)
    for ts in (1000.0, 1700.0, 2400.0):  # one run from 1000 to 2400: it joins both
        visitor.learn_one(ts)
    customer.merge(visitor)
    assert customer.count == 1 and customer.runs == [[0.0, 3000.0]]
