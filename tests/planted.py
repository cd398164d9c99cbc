"""What the behaviour model should call the simulator's planted personas: the same names in
every shop, whatever its seed or size (issue 12: stable names)."""

from __future__ import annotations

from streams.tools.quality.harness import ShopRun

#: Planted persona -> the name the model's profile gives its segment.
PLANTED_NAMES = {
    "loyal_high_spender": "big baskets, high spenders, bought recently",
    "bargain_hunter": "bargain hunters, bought recently, buy often",
    "lapsing_customer": "gone quiet, big baskets, high spenders",
    "cart_abandoner": "abandon carts, never buy",
    "window_shopper": "never buy, seldom add to cart, rarely reach checkout",
    "new_visitor": "never buy, browse little, visit rarely",
}


def names_by_persona(run: ShopRun, plans: dict) -> dict[str, str]:
    """Persona -> the name of the segment holding most of its users."""
    assert run.model is not None
    assignments = run.assignments()
    names = {}
    for segment in run.model.ids:
        members = [plans[u].persona for u, s in assignments.items() if s == segment and u in plans]
        names[max(set(members), key=members.count)] = run.model.profiles[segment]["name"]
    return names
