"""One battery of contract checks (segmenter/checks.py) over every segmentation the engine
builds from the shipped config and every stored type, without any I/O.

Segmentations and stored types are discovered (``segmentations_of``, ``stored_types``), not
listed here: a new segmentation is checked as soon as the engine builds it, and a new stored
type fails until it has a codec and a sample.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.events import (
    MAX_EPOCH_SECONDS,
    MAX_MONEY,
    MAX_QUANTITY,
    CartEvent,
    ClickEvent,
    OrderEvent,
    OrderItem,
    ProfileEvent,
    ShopEvent,
)
from features.profile import DAY, UserFeatures
from segmenter import checks
from segmenter.behavior import DIMENSIONS, BehaviorModel, behavior_vector
from segmenter.checks import (
    Cases,
    Journey,
    check_changes_match_membership,
    drive,
    entries_and_exits,
    segmentations_of,
    yield_checks,
)
from segmenter.clv import BuyTillYouDie, ValueModel
from segmenter.engine import SegmentEngine
from segmenter.records import SegmentChange
from segmenter.regrouping import Regrouping
from segmenter.settings import load_settings
from segmenter.stored_checks import codecs, stored_types

SETTINGS = load_settings(environ={})
PARAMS = SETTINGS.features.params()
T0 = 1_767_225_600.0  # 2026-01-01
USER = "u-check"
#: Bounded, so that the whole file stays well under 20 s.
FAST = settings(max_examples=12, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def click(n: int, ts: float, **extra: Any) -> ClickEvent:
    return ClickEvent(event_id=f"c{n}-{ts}", ts=ts, user_id=USER, page="/p", **extra)


def order(n: int, ts: float, total: float, status: str = "placed", **extra: Any) -> OrderEvent:
    return OrderEvent(event_id=f"o{n}-{status}-{ts}", ts=ts, user_id=USER, order_id=f"o{n}",
                      total=total, status=status, **extra)


def profile(ts: float, **traits: Any) -> ProfileEvent:
    return ProfileEvent(event_id=f"p-{ts}", ts=ts, user_id=USER, **traits)


def cart_add(ts: float, product: str = "p1", price: float = 30.0, quantity: int = 1) -> CartEvent:
    return CartEvent(event_id=f"k-{product}-{ts}", ts=ts, user_id=USER, action="add",
                     product_id=product, price=price, quantity=quantity, category="shoes")


def journey() -> Journey:
    """A user taken into and out of a segment of every shipped segmentation: a browsing
    teenager from Germany who abandons a cart, buys once, moves to France, turns loyal and a
    VIP, goes quiet for a year, then has every order cancelled."""
    day = lambda n: T0 + n * DAY  # noqa: E731
    buy = [OrderItem(product_id="p1", category="shoes", price=30.0)]
    return [
        (day(0), [profile(day(0), country="DE", age=17)]),
        (day(0) + 60, [click(n, day(0) + 60 + n, utm_source="google") for n in range(25)]),
        (day(0) + 7200, [cart_add(day(0) + 7200)]),
        (day(1), [order(1, day(1), 40.0, items=buy)]),
        (day(41), [profile(day(41), country="FR", age=30)]),
        (day(45), [order(n, day(45) + n, 300.0) for n in range(2, 8)]),
        (day(420), [order(n, day(420) + n, 0.0, status="cancelled") for n in range(1, 8)]),
    ]


JOURNEY_END = T0 + 430 * DAY


def user_of(events: list[ShopEvent]) -> UserFeatures:
    user = UserFeatures(PARAMS)
    for event in sorted(events, key=lambda e: e.ts):
        user.learn_one(event, horizon=0.0)
    return user


def models() -> BehaviorModel:
    """A behaviour model with a browsers' and a buyers' centre, and a value model."""
    browser = user_of([click(n, T0 + n) for n in range(25)]).snapshot(T0 + DAY)
    buyer = user_of([order(n, T0 + n * DAY, 300.0) for n in range(8)]).snapshot(T0 + 9 * DAY)
    params = BuyTillYouDie(r=0.243, alpha=4.414, a=0.793, b=2.426, p=6.25, q=3.74, gamma=15.44)
    tiers = [("top", 100.0), ("high", 50.0), ("medium", 20.0), ("low", 0.0)]
    return BehaviorModel(7, ["b-browse", "b-buy"], [behavior_vector(browser),
                                                    behavior_vector(buyer)],
                         [1.0] * len(behavior_vector(browser)),
                         value=ValueModel(params, 52, tiers, 500))


def engine(with_models: bool) -> SegmentEngine:
    built = SegmentEngine(SETTINGS)
    if with_models:
        built.use_model(models())
    return built


def extreme_users() -> list[UserFeatures]:
    """Money, quantities and times at the bounds events are validated to."""
    whale_items = [OrderItem(product_id="p", category="deals", price=MAX_MONEY,
                             quantity=MAX_QUANTITY)]
    return [
        user_of([order(n, T0 + n * DAY, MAX_MONEY, items=whale_items) for n in range(40)]
                + [cart_add(T0 + 50 * DAY, price=MAX_MONEY, quantity=MAX_QUANTITY)]),
        user_of([click(1, 0.0), order(1, 1.0, 0.01), profile(2.0, age=130)]),
        user_of([click(1, MAX_EPOCH_SECONDS - 1), profile(MAX_EPOCH_SECONDS - 1, age=0)]),
        user_of([profile(T0, birth_year=2100, country="JP")]),  # born in the future
    ]


@st.composite
def histories(draw: st.DrawFn) -> list[ShopEvent]:
    """A user's events over a year: views, carts, orders (some cancelled), profiles."""
    count = draw(st.integers(0, 30))
    times = sorted(draw(st.lists(st.integers(0, 400 * 86_400), min_size=count,
                                 max_size=count)))
    events: list[ShopEvent] = []
    for n, offset in enumerate(times):
        ts = T0 + offset
        kind = draw(st.sampled_from(["click", "click", "cart", "order", "cancel", "profile"]))
        if kind == "click":
            events.append(click(n, ts, utm_source=draw(st.sampled_from(["google", "mail"]))))
        elif kind == "cart":
            events.append(cart_add(ts, draw(st.sampled_from(["p1", "p2"]))))
        elif kind == "order":
            events.append(order(n, ts, draw(st.floats(0, 2_000, allow_nan=False))))
        elif kind == "cancel" and n:
            events.append(order(draw(st.integers(0, n - 1)), ts, 10.0, status="cancelled"))
        else:
            events.append(profile(ts, country=draw(st.sampled_from(["DE", "FR"])),
                                  age=draw(st.integers(0, 130))))
    return events


def as_journey(events: list[ShopEvent]) -> Journey:
    return [(event.ts, [event]) for event in events]


SEGMENTATIONS = [s.name for s in segmentations_of(engine(with_models=True))]


def segmentation(name: str, built: SegmentEngine) -> Any:
    return next(s for s in segmentations_of(built) if s.name == name)


def cases_for(built: SegmentEngine, users: list[UserFeatures]) -> Cases:
    return Cases(now=T0 + 200 * DAY, users=users, features_of=built.features_of,
                 codecs=codecs(PARAMS))


def test_every_shipped_segmentation_is_discovered() -> None:
    shipped = {"rfm", "lifecycle", "country", "age_band", "value_tier", "behavior",
               *(rule.name for rule in SETTINGS.rules)}
    assert set(SEGMENTATIONS) == shipped  # a shipped one the engine does not build: a bug


@pytest.mark.parametrize("with_models", [False, True], ids=["no-model", "model"])
@pytest.mark.parametrize("name", SEGMENTATIONS)
def test_segmentation_contract_on_empty_typical_and_extreme_users(name: str,
                                                                   with_models: bool) -> None:
    built = engine(with_models)
    checks = list(yield_checks(segmentation(name, built)))
    assert len(checks) >= 3

    @FAST
    @given(histories())
    def typical(events: list[ShopEvent]) -> None:
        users = [UserFeatures(PARAMS), user_of(events), *extreme_users()]
        for check in checks:
            check(segmentation(name, built), cases_for(built, users))

    typical()


@pytest.mark.parametrize("with_models", [False, True], ids=["no-model", "model"])
def test_engine_contract_on_the_journey(with_models: bool) -> None:
    built = engine(with_models)
    cases = Cases(now=JOURNEY_END, journey=journey(), journey_end=JOURNEY_END)
    for check in yield_checks(built):
        check(built, cases)


@settings(FAST, max_examples=8)
@given(histories())
def test_engine_contract_on_random_users(events: list[ShopEvent]) -> None:
    built = engine(with_models=True)
    end = T0 + 450 * DAY  # past every history's last order by more than churned_after_days
    cases = Cases(now=end, journey=as_journey(events), journey_end=end)
    for check in yield_checks(built):
        check(built, cases)


def test_the_journey_enters_and_leaves_a_segment_of_every_segmentation() -> None:
    log = drive(engine(with_models=True), USER, journey(), JOURNEY_END)
    counts = entries_and_exits(log)
    missing = [name for name in SEGMENTATIONS if min(counts.get(name, (0, 0))) < 1]
    assert not missing, f"never entered and left (extend journey()): {missing}; {counts}"
    forgotten = log[-1].changes
    assert {c.segmentation for c in forgotten} == set(log[-2].after)
    assert {c.type for c in forgotten} == {"leave"}


def test_changes_check_catches_an_unreported_move() -> None:
    """The battery can fail: an engine that swallows one change is caught."""
    built = engine(with_models=False)
    learn = built.learn
    built.learn = lambda *args, **kw: learn(*args, **kw)[1:]  # type: ignore[method-assign]
    with pytest.raises(AssertionError, match="reported"):
        check_changes_match_membership(built, Cases(now=JOURNEY_END, journey=journey(),
                                                    journey_end=JOURNEY_END))


def test_time_alone_moves_a_quiet_user_s_behaviour_segment_within_a_review_period() -> None:
    """One order, then nothing: the nearest behaviour centre changes as the days since the
    order grow, and a review moves the user within ``behavior.review_days`` of that day (the
    engine once scheduled no behaviour review: the move waited for another reason to look)."""
    built = engine(with_models=True)
    record = built.new_record()
    built.learn(USER, record, [order(1, T0, 40.0)], T0)
    assert record.segments["behavior"] == "b-buy"

    def nearest(at: float) -> str | None:
        vector = behavior_vector(built.features_of(record.features, at))
        return built.behavior.model.predict_one(vector)

    crossing = next(T0 + hours * 3600.0 for hours in range(1, 500 * 24)
                    if nearest(T0 + hours * 3600.0) == "b-browse")
    log = checks.drive(copy.deepcopy(built), USER, [(T0, [order(1, T0, 40.0)])],
                       crossing + 3 * DAY)
    moves = [(e.action, e.now) for e in log for c in e.changes
             if (c.segmentation, c.previous, c.current) == ("behavior", "b-buy", "b-browse")]
    period = built.behavior_review_s
    assert len(moves) == 1 and moves[0][0] == "review", moves
    assert crossing - 3600.0 <= moves[0][1] <= crossing + period, (moves, crossing)

def pool() -> Iterator[Any]:
    """Samples of every stored type: records along the journey and of extreme users, their
    parts, the models and a worker's statistics."""
    built = engine(with_models=True)
    records = [built.new_record()]
    for events in ([e for _, batch in journey() for e in batch[:1]],
                   [order(n, T0 + n * DAY, MAX_MONEY) for n in range(30)]):
        record = built.new_record()
        for event in events:
            built.learn(USER, record, [event], event.ts)
            records.append(copy.deepcopy(record))
    customer, visitor = copy.deepcopy(records[-1]), built.new_record()
    built.learn("a1", visitor, [cart_add(T0 + 31 * DAY)], T0 + 31 * DAY)
    built.merge(USER, customer, "a1", visitor, T0 + 31 * DAY, "merge:c1")
    # What the worker adds (streams/): a claimed visitor, change events not known delivered.
    customer.claimed, customer.outbox_seq = ["a2"], 3
    customer.outbox = [c.to_json(T0).decode() for c in built.review(USER, customer, JOURNEY_END)]
    records += [customer, visitor]
    for record in records:
        features = record.features
        yield from (record, features, features.cart, features.recent_ids, features.ledger,
                    features.traits, features.channels, features.days,
                    features.session_counter, features.engagement, record.customer)
    yield from extreme_users()
    model = models()
    yield from (model, model.value, model.value and model.value.params)
    yield BehaviorModel(1, ["a"], [[0.0] * 10], [0.0] * 10)  # scale 0: kept above 0
    yield from regrouping()
    yield built.take_statistics()


def regrouping() -> Iterator[Any]:
    """A regrouping under way (kept in the model's training state) and a version on it."""
    sample = [[float(n % 7), float(n % 3)] + [float(n % 2)] * (DIMENSIONS - 2) for n in range(60)]
    path = Regrouping.between(["a", "b"], [[0.0] * DIMENSIONS, [5.0] * DIMENSIONS], ["a", "c"],
                              [[1.0] * DIMENSIONS, [3.0] * DIMENSIONS],
                              ([0.0] * DIMENSIONS, [2.0] * DIMENSIONS), sample)
    path.advance(sample, budget=0.05)
    yield from (path, path.model())


SAMPLES = [sample for sample in pool() if sample is not None]
STORED = sorted(stored_types(), key=lambda cls: cls.__name__)


def test_every_stored_type_has_a_codec() -> None:
    assert set(STORED) <= set(codecs(PARAMS)), set(STORED) - set(codecs(PARAMS))


@pytest.mark.parametrize("stored", STORED, ids=[cls.__name__ for cls in STORED])
def test_stored_type_round_trips(stored: type) -> None:
    samples = [s for s in SAMPLES if type(s) is stored]
    assert samples, f"no sample of {stored.__name__}: add one to pool()"
    cases = cases_for(engine(with_models=True), [])
    for sample in samples:
        checks = list(yield_checks(sample))
        assert checks
        for check in checks:
            check(sample, cases)


CHANGE_TIMES = [0.0, T0 + 0.0005, T0 + 0.9999, MAX_EPOCH_SECONDS - 0.001]


def change_samples() -> Iterator[SegmentChange]:
    for evaluation in drive(engine(with_models=True), USER, journey(), JOURNEY_END):
        yield from evaluation.changes
    for ts in CHANGE_TIMES:
        yield SegmentChange("ü-" + "x" * 256, "vip", None, "vip", ts, "e\x1f\"1", "u2", 3)


def test_change_events_say_what_changed() -> None:
    changes = list(change_samples())
    assert {c.type for c in changes} == {"enter", "leave", "move"}
    for change in changes:
        for check in yield_checks(change):
            check(change, Cases(now=JOURNEY_END))
