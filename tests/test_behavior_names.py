"""The same planted kinds get the same names in another shop (another seed and size), in a
file of its own so that it runs beside the shared shop of tests/test_behavior.py."""

from __future__ import annotations

from planted import PLANTED_NAMES, names_by_persona

from segmenter.settings import load_settings
from streams.tools.quality.harness import ShopRun
from streams.tools.traffic.personas import plan_events

END = 1_767_225_600.0


def test_the_same_planted_kinds_get_the_same_names_in_another_shop() -> None:
    events, plans = plan_events(users=1000, days=90, seed=12, end_ts=END)
    run = ShopRun(load_settings(environ={}), count_churn=False)
    run.feed(events)
    run.settle()
    assert names_by_persona(run, plans) == PLANTED_NAMES
