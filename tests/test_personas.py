"""The traffic planner: deterministic, valid events, and each planted persona behaves as named."""

from __future__ import annotations

import itertools
import re
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from features.events import EVENT_TYPES
from streams.tools.traffic.personas import (
    DAY,
    DEFAULT_MIX,
    PERSONAS,
    SALE_CATEGORY,
    UserPlan,
    assign_personas,
    entity_id,
    plan_events,
)
from streams.tools.traffic.simulator import write_personas

END = 1_767_225_600.0  # 2026-01-01T00:00:00Z
PAGE = re.compile(r"^/$|^/c/[a-z]+$|^/p/[a-z]+-\d+$|^/cart$|^/checkout$")

Plan = tuple[list[dict[str, Any]], dict[str, UserPlan]]


@pytest.fixture(scope="module", params=[5, 2026])
def planned(request: pytest.FixtureRequest) -> Plan:
    return plan_events(users=300, days=90, seed=request.param, end_ts=END)


def by_user(planned: Plan) -> dict[str, list[dict[str, Any]]]:
    """Planned entity id -> all of that user's events (pre-login anonymous ones included)."""
    events, plans = planned
    owner = {plan.anonymous_id: key for key, plan in plans.items()}
    owner |= {plan.user_id: key for key, plan in plans.items() if plan.user_id}
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        grouped[owner[entity_id(event)]].append(event)
    return grouped


def of_persona(planned: Plan, persona: str) -> list[tuple[UserPlan, list[dict[str, Any]]]]:
    grouped = by_user(planned)
    users = [(plan, grouped[key]) for key, plan in planned[1].items() if plan.persona == persona]
    assert users, f"no {persona} planned"
    return users


def orders(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event for event in events if event["kind"] == "order"]


def test_the_same_seed_gives_the_same_events_and_another_seed_others() -> None:
    first = plan_events(users=50, days=90, seed=3, end_ts=END)
    again = plan_events(users=50, days=90, seed=3, end_ts=END)
    other = plan_events(users=50, days=90, seed=4, end_ts=END)
    assert orjson.dumps(first[0]) == orjson.dumps(again[0])
    assert first[1] == again[1]
    assert [e["ts"] for e in first[0]] != [e["ts"] for e in other[0]]


def test_every_event_validates_and_is_sorted_within_the_window(planned: Plan) -> None:
    events, _ = planned
    for event in events:
        model = EVENT_TYPES[event["kind"]].model_validate(event)
        assert model.kind == event["kind"]
        assert model.entity_id == entity_id(event)
    timestamps = [event["ts"] for event in events]
    assert timestamps == sorted(timestamps)
    assert timestamps[0] >= END - 90 * DAY and timestamps[-1] <= END
    assert len({event["event_id"] for event in events}) == len(events)
    assert all(event["event_id"].endswith(f"-{n}") for n, event in enumerate(events))


def test_events_have_the_contract_shape(planned: Plan) -> None:
    events, _ = planned
    for event in events:
        if event["kind"] == "click":
            assert PAGE.match(event["page"]), event
            assert event["session_id"]
            assert ("product_id" in event) == event["page"].startswith("/p/")
        elif event["kind"] == "cart":
            assert event["action"] in {"add", "remove", "checkout"}
            assert event["action"] == "checkout" or event["price"] > 0
        elif event["kind"] == "profile":
            assert event["user_id"] and len(event["country"]) == 2 and event["birth_year"]
        else:
            assert event["user_id"] and event["currency"] == "EUR" and event["items"]
            items_total = sum(item["price"] * item["quantity"] for item in event["items"])
            assert event["total"] == pytest.approx(items_total, abs=0.01)
    order_ids = [event["order_id"] for event in orders(events)]
    assert len(set(order_ids)) == len(order_ids)


def test_sessions_are_bursts_of_clicks(planned: Plan) -> None:
    sessions: dict[str, list[float]] = defaultdict(list)
    for event in planned[0]:
        if event["kind"] == "click":
            sessions[event["session_id"]].append(event["ts"])
    for times in sessions.values():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(0 < gap < 30 * 60 for gap in gaps)


def test_every_user_has_events_and_volume_is_realistic(planned: Plan) -> None:
    events, plans = planned
    grouped = by_user(planned)
    assert set(grouped) == set(plans)
    assert 20 <= len(events) / len(plans) <= 60
    personas = Counter(plan.persona for plan in plans.values())
    assert personas == {name: round(300 * share) for name, share in DEFAULT_MIX.items()}


def test_ids_follow_the_persona(planned: Plan) -> None:
    for key, plan in planned[1].items():
        assert key == plan.entity_id
        assert plan.anonymous_id == f"a{plan.index:05d}"
        assert plan.user_id in (None, f"u{plan.index:05d}")
        if plan.persona == "window_shopper":
            continue
        assert (plan.user_id is None) == (plan.persona == "new_visitor")


@pytest.mark.parametrize("persona", ["window_shopper", "new_visitor", "cart_abandoner"])
def test_browsers_never_order(planned: Plan, persona: str) -> None:
    for _, events in of_persona(planned, persona):
        assert not orders(events)


def test_window_shoppers_browse_a_lot_but_never_touch_a_cart(planned: Plan) -> None:
    for _, events in of_persona(planned, "window_shopper"):
        events = [event for event in events if event["kind"] != "profile"]
        assert all(event["kind"] == "click" for event in events)
        assert len({event["session_id"] for event in events}) >= 4
        assert sum("product_id" in event for event in events) >= 5


def test_cart_abandoners_add_and_often_check_out(planned: Plan) -> None:
    users = of_persona(planned, "cart_abandoner")
    checked_out = 0
    for _, events in users:
        actions = Counter(event["action"] for event in events if event["kind"] == "cart")
        assert actions["add"] >= 1
        checked_out += actions["checkout"] > 0
        assert END - events[-1]["ts"] <= 9 * DAY  # the abandoned cart is recent
    assert checked_out >= 0.5 * len(users)


def test_new_visitors_are_anonymous_short_and_recent(planned: Plan) -> None:
    for plan, events in of_persona(planned, "new_visitor"):
        assert plan.user_id is None and plan.entity_id == plan.anonymous_id
        assert all("user_id" not in event and event["kind"] == "click" for event in events)
        assert 1 <= len({event["session_id"] for event in events}) <= 2
        assert len(events) <= 12
        assert END - events[0]["ts"] <= 5 * DAY


def test_lapsing_customers_bought_early_then_went_quiet(planned: Plan) -> None:
    for _, events in of_persona(planned, "lapsing_customer"):
        assert len(orders(events)) >= 2
        assert END - events[-1]["ts"] > 60 * DAY  # no visit, no order in the last 60 days


def test_loyal_high_spenders_order_often_recently_and_spend_the_most(planned: Plan) -> None:
    average_order = {
        persona: statistics.mean(order["total"] for _, events in of_persona(planned, persona)
                                 for order in orders(events))
        for persona in ("loyal_high_spender", "bargain_hunter", "lapsing_customer")
    }
    assert max(average_order, key=average_order.__getitem__) == "loyal_high_spender"
    assert average_order["loyal_high_spender"] >= 2 * average_order["lapsing_customer"]
    for _, events in of_persona(planned, "loyal_high_spender"):
        placed = orders(events)
        assert len(placed) >= 4
        assert END - placed[-1]["ts"] <= 14 * DAY


def test_bargain_hunters_order_small_and_often_and_browse_deals(planned: Plan) -> None:
    users = of_persona(planned, "bargain_hunter")
    for _, events in users:
        placed = orders(events)
        assert len(placed) >= 5
        assert statistics.mean(order["total"] for order in placed) < 80
        views = [event["category"] for event in events if "product_id" in event
                 and event["kind"] == "click"]
        assert views.count(SALE_CATEGORY) >= len(views) / 2


def test_mix_is_configurable_and_validated() -> None:
    mix = {"new_visitor": 1.0, "loyal_high_spender": 3.0}
    _, plans = plan_events(users=40, days=90, seed=1, end_ts=END, mix=mix)
    assert Counter(plan.persona for plan in plans.values()) == {
        "loyal_high_spender": 30, "new_visitor": 10}
    assert Counter(assign_personas(6, seed=1)) == dict.fromkeys(PERSONAS, 1)
    with pytest.raises(ValueError, match="unknown personas"):
        assign_personas(10, seed=1, mix={"shoplifter": 1.0})
    with pytest.raises(ValueError, match="weights"):
        assign_personas(10, seed=1, mix={"new_visitor": -1.0})


def test_short_windows_still_give_every_user_valid_events() -> None:
    events, plans = plan_events(users=60, days=3, seed=9, end_ts=END)
    assert set(by_user((events, plans))) == set(plans)
    for event in events:
        EVENT_TYPES[event["kind"]].model_validate(event)
        assert END - 3 * DAY <= event["ts"] <= END
    assert plan_events(users=0, days=3, seed=9, end_ts=END) == ([], {})


def test_persona_file_has_one_line_per_user(planned: Plan, tmp_path: Path) -> None:
    _, plans = planned
    path = tmp_path / "out" / "personas.jsonl"
    assert write_personas(path, plans.values()) == len(plans)
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [row["entity_id"] for row in rows] == sorted(plans, key=lambda k: plans[k].index)
    for row in rows:
        plan = plans[row["entity_id"]]
        assert row == {"entity_id": plan.entity_id, "user_id": plan.user_id,
                       "anonymous_id": plan.anonymous_id, "persona": plan.persona}
    assert {row["persona"] for row in rows} == set(PERSONAS)
