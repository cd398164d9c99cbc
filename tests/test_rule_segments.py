"""Rule segments in the engine: loaded with the settings, moved by time alone, without flapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.events import CartEvent, ClickEvent, OrderEvent, ShopEvent
from features.profile import DAY
from segmenter.engine import SegmentChange, SegmentEngine, UserRecord
from segmenter.settings import Settings, SettingsError, load_settings

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def settings_with(tmp_path: Path, rules: str, **environ: str) -> Settings:
    path = tmp_path / "rules.yaml"
    path.write_text(rules)
    return load_settings(environ={"SEGMENTER_RULES_FILE": str(path), **environ})


def one_rule(tmp_path: Path, rule: str, dwell: float | None = None) -> SegmentEngine:
    extra = "" if dwell is None else f"\n    min_dwell_minutes: {dwell}"
    return SegmentEngine(settings_with(tmp_path, f"segments:\n  r:\n    rule: {rule}{extra}\n"))


def cart(n: int, ts: float, action: str = "add", price: float = 120.0) -> CartEvent:
    return CartEvent(event_id=f"c{n}", ts=ts, user_id="u1", action=action, product_id="p1",
                     price=price)


def order(n: int, ts: float) -> OrderEvent:
    return OrderEvent(event_id=f"o{n}", ts=ts, user_id="u1", order_id=str(n), total=50.0)


def click(n: int, ts: float) -> ClickEvent:
    return ClickEvent(event_id=f"v{n}", ts=ts, anonymous_id="u1", page="/")


def rule_changes(changes: list[SegmentChange]) -> list[tuple[str | None, str | None, float]]:
    return [(c.previous, c.current, c.ts) for c in changes if c.segmentation == "r"]


def follow_time(engine: SegmentEngine, record: UserRecord, until: float) -> list[tuple]:
    """Review the user whenever their record asks, up to ``until``; the rule's changes."""
    seen = []
    while record.review_at is not None and record.review_at <= until:
        seen += rule_changes(engine.review("u1", record, record.review_at))
    return seen


def start(engine: SegmentEngine, events: list[ShopEvent]) -> tuple[UserRecord, list[tuple]]:
    record = engine.new_record()
    return record, rule_changes(engine.learn("u1", record, events, events[-1].ts))


def test_shipped_rules_are_segmentations_with_their_dwell() -> None:
    engine = SegmentEngine(load_settings(environ={}))
    names = [s.name for s in engine.segmentations]
    assert names == ["rfm", "lifecycle", "country", "age_band", "cart_abandoners", "vip",
                     "browsers", "one_time_buyers", "value_tier"]
    assert engine.dwell["vip"] == 3600 and engine.dwell["cart_abandoners"] == 0
    assert engine.catalogue()["vip"]["vip"].startswith("Spent 1000 in a year")


def test_days_since_rules_move_exactly_when_the_threshold_passes(tmp_path: Path) -> None:
    engine = one_rule(tmp_path, "orders == 1 and days_since_last_order > 30")
    record, entered = start(engine, [order(1, T0)])
    assert entered == []
    assert follow_time(engine, record, T0 + 400 * DAY) == [(None, "r", T0 + 30 * DAY + 1)]


def test_engagement_rules_leave_when_it_decays_below(tmp_path: Path) -> None:
    engine = one_rule(tmp_path, "engagement >= 5")  # an order weighs 10; half-life 14 days
    record, entered = start(engine, [order(1, T0)])
    assert entered == [(None, "r", T0)]
    assert follow_time(engine, record, T0 + 400 * DAY) == [("r", None, T0 + 14 * DAY + 1)]


def test_a_cart_is_abandoned_after_the_delay_and_not_when_bought(tmp_path: Path) -> None:
    engine = one_rule(tmp_path, "abandoned_cart == 1", dwell=0)
    record, entered = start(engine, [cart(1, T0 + 3600)])
    assert entered == []
    # Abandoned an hour after the add (features.cart_abandon_hours); the cart expires, and the
    # user leaves, once untouched for features.cart_expiry_days.
    assert follow_time(engine, record, T0 + 30 * DAY) == [
        (None, "r", T0 + 3600 + 3600 + 1), ("r", None, T0 + 3600 + 14 * DAY + 1)]
    bought, _ = start(engine, [cart(1, T0 + 3600)])
    assert rule_changes(engine.learn("u1", bought, [order(1, T0 + 7200)], T0 + 7200)) == []
    assert follow_time(engine, bought, T0 + 30 * DAY) == []


def test_an_order_takes_out_what_it_bought_and_an_emptied_cart_is_left(
        tmp_path: Path) -> None:
    engine = one_rule(tmp_path, "abandoned_cart == 1", dwell=0)
    shoes = CartEvent(event_id="k1", ts=T0, user_id="u1", action="add", product_id="shoes",
                      price=80.0, quantity=1)
    socks = CartEvent(event_id="k2", ts=T0 + 60, user_id="u1", action="add",
                      product_id="socks", price=5.0, quantity=3)
    record, _ = start(engine, [shoes, socks])
    bought_shoes = OrderEvent(event_id="o1", ts=T0 + 600, user_id="u1", order_id="1",
                              total=80.0, items=[{"product_id": "shoes", "price": 80.0}])
    assert rule_changes(engine.learn("u1", record, [bought_shoes], T0 + 600)) == []
    features = record.features.snapshot(T0 + 600)
    assert (features["open_cart"], features["open_cart_value"]) == (1, 15.0)  # the socks
    # An hour after the last cart change the socks are an abandoned cart...
    assert follow_time(engine, record, T0 + 2 * 3600) == [(None, "r", T0 + 60 + 3600 + 1)]
    # ... until they are removed: the cart is empty and the user leaves at once.
    removed = CartEvent(event_id="k3", ts=T0 + 3 * 3600, user_id="u1", action="remove",
                        product_id="socks", quantity=3)
    assert rule_changes(engine.learn("u1", record, [removed], T0 + 3 * 3600)) == [
        ("r", None, T0 + 3 * 3600)]
    assert record.features.snapshot(T0 + 3 * 3600)["open_cart"] == 0


def test_windowed_rules_follow_the_window_at_midnight(tmp_path: Path) -> None:
    engine = one_rule(tmp_path, "page_views_7d >= 1", dwell=0)
    record, entered = start(engine, [click(1, T0 + 3 * 3600)])
    assert entered == [(None, "r", T0 + 3 * 3600)]
    # the window covers the day of the click and the 6 after it
    assert follow_time(engine, record, T0 + 30 * DAY) == [("r", None, T0 + 7 * DAY + 1)]
    assert record.review_at is None  # nothing left that time alone could move


def on_the_threshold(engine: SegmentEngine) -> tuple[UserRecord, list[tuple]]:
    """Add, remove, add, remove a 120 item, five minutes apart."""
    record, changes = start(engine, [cart(1, T0)])
    for n, action in enumerate(["remove", "add", "remove"], start=2):
        ts = T0 + n * 300
        changes += rule_changes(engine.learn("u1", record, [cart(n, ts, action)], ts))
    return record, changes


def test_a_user_on_the_threshold_does_not_flap(tmp_path: Path) -> None:
    """Within the dwell: one entry, then one exit when it ends."""
    engine = one_rule(tmp_path, "open_cart_value >= 100", dwell=60)
    record, changes = on_the_threshold(engine)
    assert changes == [(None, "r", T0)]
    assert record.segments["r"] == "r" and record.review_at == T0 + 3600  # entered + dwell
    assert follow_time(engine, record, T0 + DAY) == [("r", None, T0 + 3600)]


def test_without_dwell_the_same_user_moves_on_every_event(tmp_path: Path) -> None:
    _, changes = on_the_threshold(one_rule(tmp_path, "open_cart_value >= 100", dwell=0))
    assert [(a, b) for a, b, _ in changes] == [(None, "r"), ("r", None), (None, "r"), ("r", None)]


def test_rule_files_are_found_relative_to_the_config_naming_them(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("segments:\n  big:\n    rule: monetary > 5000\n")
    config = tmp_path / "config.yaml"
    config.write_text("segmentations:\n  rules:\n    file: mine.yaml\n    min_dwell_minutes: 5\n")
    settings = load_settings(environ={"SEGMENTER_CONFIG": str(config)})
    assert [rule.name for rule in settings.rules] == ["big"]
    assert SegmentEngine(settings).dwell == {"big": 300}


@pytest.mark.parametrize(("rules", "message"), [
    ("segments:\n  vip:\n    rule: ordrs > 5\n",
     "segmentations.rules.file: {path} line 3, segment 'vip': unknown feature 'ordrs' "
     "(did you mean 'orders'"),
    ("segments:\n  ok:\n    rule: orders > 1\n  bad:\n    rule: orders >\n",
     "segmentations.rules.file: {path} line 5, segment 'bad': "),
    ("segments:\n  rfm:\n    rule: orders > 1\n",
     "segmentations.rules.file: {path}: segment names ['rfm'] are taken by built-in"),
    ("segments:\n  w:\n    rule: orders_14d > 1\n",
     "segmentations.rules.file: {path} line 3, segment 'w': unknown feature 'orders_14d'"),
])
def test_bad_rules_stop_the_start_with_file_and_line(
    tmp_path: Path, rules: str, message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_with(tmp_path, rules)
    assert str(caught.value).startswith(message.format(path=tmp_path / "rules.yaml"))


def test_a_missing_rule_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"segmentations\.rules\.file: rule file not found"):
        load_settings(environ={"SEGMENTER_RULES_FILE": str(tmp_path / "none.yaml")})


def test_who_and_where_rules_with_behaviour_and_interests(tmp_path: Path) -> None:
    from features.events import ProfileEvent

    engine = one_rule(tmp_path, 'country == "DE" and age >= 30 and interest("shoes") > 0.5 '
                                'and days_since_last_order > 30', dwell=0)
    profile = ProfileEvent(event_id="p1", ts=T0, user_id="u1", country="de", birth_year=1980)
    shoes = ClickEvent(event_id="v1", ts=T0 + 60, user_id="u1", page="/p/1", product_id="p1",
                       category="shoes", utm_source="Newsletter", device="mobile")
    record, entered = start(engine, [profile, shoes, order(1, T0 + 120)])
    assert entered == []
    features = record.features.snapshot(T0 + 120)
    assert (features["country"], features["age"], features["preferred_channel"],
            features["first_channel"], features["preferred_device"]) == (
        "DE", 46.0, "newsletter", "newsletter", "mobile")
    # Time alone brings them in, 30 days after the order: country, age and interest hold.
    assert follow_time(engine, record, T0 + 40 * DAY) == [(None, "r", T0 + 120 + 30 * DAY + 1)]
    # A later profile event moves them: not German any more.
    moved = ProfileEvent(event_id="p2", ts=T0 + 41 * DAY, user_id="u1", country="AT")
    assert rule_changes(engine.learn("u1", record, [moved], T0 + 41 * DAY)) == [
        ("r", None, T0 + 41 * DAY)]
