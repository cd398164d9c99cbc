"""The documented features: every name a rule can read, with its unit and definition
(docs/features.md holds the same table; a test keeps them together)."""

from __future__ import annotations

WINDOWED = ("orders", "monetary", "page_views", "product_views", "cart_adds")
#: ``features.windows_days`` unless configured otherwise.
DEFAULT_WINDOWS_DAYS = (7, 30, 90, 365)

_BASE_FEATURES: dict[str, tuple[str, str]] = {
    "orders": ("count", "orders placed and not cancelled or refunded in full, all time"),
    "monetary": ("currency", "sum of order totals net of refunds, all time"),
    "avg_order_value": ("currency", "monetary / orders (0 without orders)"),
    "days_since_last_order": ("days", "since the last order (inf without orders)"),
    "days_since_first_order": ("days", "since the first order (inf without orders)"),
    "purchase_interval_days": ("days", "mean time between orders (inf with fewer than 2)"),
    "days_since_last_visit": ("days", "since the user's latest event of any kind"),
    "days_since_first_seen": ("days", "since the user's first event"),
    "page_views": ("count", "click events, all time"),
    "product_views": ("count", "click events naming a product, all time"),
    "sessions": ("count", "runs of activity split by features.session_gap_minutes of quiet"),
    "cart_adds": ("count", "cart add events, all time"),
    "cart_removes": ("count", "cart remove events, all time"),
    "checkouts": ("count", "cart checkout events, all time"),
    "days_since_last_cart": ("days", "since the latest cart event: add, remove or checkout (inf "
                                     "without)"),
    "open_cart": ("0/1", "items added after the last order are still in the cart"),
    "open_cart_value": ("currency", "value of the items in the open cart"),
    "abandoned_cart": ("0/1", "open cart untouched for features.cart_abandon_hours (and not "
                              "expired)"),
    "discount_affinity": ("share 0-1", "ordered items that were cheap or in a discount category"),
    "top_category_share": ("share 0-1", "views, adds and items bought in the user's top category"),
    "engagement": ("score", "events weighted 1 (view), 3 (cart), 10 (order), halving every "
                            "features.engagement_half_life_days"),
    "country": ("text", "ISO 3166 code from the latest profile event, e.g. DE ('' unknown)"),
    "region": ("text", "region from the latest profile event ('' unknown)"),
    "city": ("text", "city from the latest profile event, lower case ('' unknown)"),
    "gender": ("text", "gender from the latest profile event, lower case ('' unknown)"),
    "language": ("text", "language tag from the latest profile event, e.g. de ('' unknown)"),
    "age": ("years", "from the birth year (or age) in profile events (nan unknown: only != "
                     "holds)"),
    "marketing_consent": ("0/1", "the latest profile event said yes (0 unknown)"),
    "preferred_channel": ("text", "the utm_source of most of the user's clicks ('' none)"),
    "preferred_medium": ("text", "the utm_medium of most of the user's clicks ('' none)"),
    "preferred_device": ("text", "the device of most of the user's clicks ('' none)"),
    "first_channel": ("text", "the utm_source of the user's earliest click with one ('' none)"),
}
#: Features the customer value model adds when a user is evaluated (segmenter/clv.py): 0 for
#: users without orders and until the trainer's first fit.
MODEL_FEATURES: dict[str, tuple[str, str]] = {
    "predicted_value": ("currency", "predicted value of the customer's orders over the next "
                                    "segmentations.value.horizon_weeks (52), BG/NBD x Gamma-Gamma"),
    "expected_orders": ("count", "orders predicted over the same horizon"),
    "p_alive": ("share 0-1", "probability that the customer still buys (BG/NBD)"),
}
#: Features whose values are text: rules compare them with strings, with == and != only.
TEXT_FEATURES = frozenset(name for name, (unit, _) in _BASE_FEATURES.items() if unit == "text")


def feature_catalogue(windows_days: tuple[int, ...]) -> dict[str, tuple[str, str]]:
    """Every feature name -> (unit, definition), windowed ones included."""
    catalogue = dict(_BASE_FEATURES)
    for days in windows_days:
        for name in WINDOWED:
            unit, definition = _BASE_FEATURES[name]
            catalogue[f"{name}_{days}d"] = (unit, definition.replace("all time",
                                                                     f"last {days} days"))
    return catalogue


#: The documented features with the default windows.
FEATURES = feature_catalogue(DEFAULT_WINDOWS_DAYS)
