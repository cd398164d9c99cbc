"""The review schedule against the plain definition: a user is due once event time reaches
the last time they were scheduled for (unless cancelled), earliest first."""

from __future__ import annotations

import random

import pytest

from segmenter.schedule import ReviewSchedule


def _reference_pop(due: dict[str, float], now: float, limit: int | None) -> list[str]:
    ready = sorted((at, user) for user, at in due.items() if at <= now)[:limit]
    for _, user in ready:
        del due[user]
    return [user for _, user in ready]


@pytest.mark.parametrize("seed", range(5))
def test_pops_what_the_definition_says_whatever_the_order_of_changes(seed: int) -> None:
    rng = random.Random(seed)
    schedule, due = ReviewSchedule(), {}
    users = [f"u{n}" for n in range(200)]
    now = 0.0
    for _ in range(20_000):
        draw = rng.random()
        if draw < 0.8:
            user = rng.choice(users)
            at = None if rng.random() < 0.05 else now + rng.uniform(0, 500)
            schedule.schedule(user, at)
            if at is None:
                due.pop(user, None)
            else:
                due[user] = at
        else:
            now += rng.uniform(0, 50)
            limit = rng.choice([None, 1, 5, 50])
            assert schedule.pop_due(now, limit) == _reference_pop(due, now, limit)
        assert len(schedule) == len(due)


def test_moving_reviews_later_keeps_one_entry_a_user() -> None:
    schedule = ReviewSchedule()
    for step in range(50):
        for n in range(1_000):
            schedule.schedule(f"u{n}", 1_000.0 + step)
    assert len(schedule._heap) == 1_000
    assert schedule.pop_due(1_048.0) == []
    assert len(schedule.pop_due(1_049.0)) == 1_000


def test_a_call_looks_at_a_bounded_number_of_entries_and_says_when_more_came_up() -> None:
    schedule = ReviewSchedule()
    for n in range(10_000):  # every review moved later: each entry only moves on
        schedule.schedule(f"u{n}", 10.0)
        schedule.schedule(f"u{n}", 1_000.0 + n)
    schedule.schedule("due", 50.0)
    calls, popped = 0, []
    while schedule.due_by(100.0):
        popped += schedule.pop_due(100.0, limit=10)
        calls += 1
        assert calls < 1_000
    assert popped == ["due"]
    assert calls == 10_001 // (10 * 8) + 1
    assert len(schedule) == 10_000
