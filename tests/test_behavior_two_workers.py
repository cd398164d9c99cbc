"""Two workers train one behaviour model and place users as one worker does, in process (no
Kafka, no Redis): logins whose visitor lives on the other worker are handed over, and RFM scores
come from the shop-wide population the trainer adds up.

A module of its own, on a smaller shop than tests/test_behavior.py's, so that it runs beside
that module's shop instead of after it (both are minutes of CPU). At 800 users the model goes
through a regrouping (219 versions); at 700 it makes none, and at 600 only 4 versions."""

from __future__ import annotations

import pytest

from segmenter.settings import load_settings
from streams.tools.quality.harness import ShopRun, agreement
from streams.tools.traffic.personas import plan_events

SETTINGS = load_settings(environ={})
END = 1_767_225_600.0
pytestmark = pytest.mark.timeout(600)


def test_two_workers_share_one_model_and_agree_with_one_worker() -> None:
    events, plans = plan_events(users=800, days=90, seed=11, end_ts=END)
    runs = []
    for workers in (1, 2):
        run = ShopRun(SETTINGS, workers=workers, count_churn=False)
        run.feed(events)
        run.settle()
        runs.append(run)
    one, two = runs
    assert one.model is not None and two.model is not None
    # logins whose visitor lives on the other worker were handed over: the same users
    assert set(two.assignments()) == set(one.assignments()) == set(plans)
    assert agreement(one.assignments(), two.assignments()) >= 0.99
    # RFM quintiles come from the shop-wide population the trainer adds up: the same scores
    assert len(set(one.assignments("rfm").values()) - {None}) >= 4
    assert two.assignments("rfm") == one.assignments("rfm")
