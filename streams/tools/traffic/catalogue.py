"""The simulated shop's catalogue: categories, products with prices, and price-level pools.

The same catalogue every run (its random generator has a fixed seed).

>>> sorted(CATALOGUE) == sorted(PRICE_BANDS)
True
>>> all(p.price <= 25 for p in CATALOGUE[SALE_CATEGORY])
True
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SALE_CATEGORY = "deals"
PRICE_BANDS: dict[str, tuple[float, float]] = {
    "shoes": (35, 180), "apparel": (12, 140), "electronics": (40, 900),
    "home": (8, 300), "beauty": (4, 70), SALE_CATEGORY: (2, 25),
}
PRODUCTS_PER_CATEGORY = 12


@dataclass(frozen=True, slots=True)
class Product:
    """An item of the simulated catalogue."""

    product_id: str
    category: str
    price: float

    def item(self, quantity: int) -> dict[str, Any]:
        """The cart event / order item fields for ``quantity`` of this product."""
        return {"product_id": self.product_id, "category": self.category, "price": self.price,
                "quantity": quantity}


def _build_catalogue() -> dict[str, tuple[Product, ...]]:
    """The same catalogue every run: log-uniform prices in each category's band, cheapest first."""
    rng = random.Random("segmenter-catalogue")
    catalogue = {}
    for category, (low, high) in PRICE_BANDS.items():
        prices = sorted(math.exp(rng.uniform(math.log(low), math.log(high)))
                        for _ in range(PRODUCTS_PER_CATEGORY))
        catalogue[category] = tuple(
            Product(f"{category}-{n:02d}", category, max(1, round(price)) - 0.01)
            for n, price in enumerate(prices, 1))
    return catalogue


CATALOGUE = _build_catalogue()
CATEGORIES = tuple(CATALOGUE)
REGULAR_CATEGORIES = tuple(c for c in CATEGORIES if c != SALE_CATEGORY)
#: Product pools by price level: the top third, the middle and the cheap end (plus all deals).
POOLS: dict[str, tuple[Product, ...]] = {
    "all": tuple(p for products in CATALOGUE.values() for p in products),
    "premium": tuple(p for c in ("shoes", "apparel", "electronics", "home")
                     for p in CATALOGUE[c][-4:]),
    "mid": tuple(p for c in REGULAR_CATEGORIES for p in CATALOGUE[c][3:9]),
    "cheap": CATALOGUE[SALE_CATEGORY] + tuple(p for c in REGULAR_CATEGORIES
                                              for p in CATALOGUE[c][:2]),
}


@functools.cache
def _preferred(pool: str, categories: tuple[str, ...]) -> tuple[Product, ...]:
    return tuple(p for p in POOLS[pool] if p.category in categories)


def pick(rng: random.Random, pool: str, count: int, prefer: Sequence[str] = (),
          bias: float = 0.75) -> list[Product]:
    """``count`` products of a pool, each from the preferred categories with chance ``bias``."""
    preferred = _preferred(pool, tuple(prefer)) or POOLS[pool]
    return [rng.choice(preferred if rng.random() < bias else POOLS[pool]) for _ in range(count)]


#: Where visits come from (utm_source, utm_medium) and on what, with their weights; who the
#: known customers are (their profile event at their first logged-in visit).
SOURCES = ((None, None, 0.35), ("google", "cpc", 0.25), ("newsletter", "email", 0.2),
           ("instagram", "social", 0.15), ("partner", "affiliate", 0.05))
DEVICES = (("mobile", 0.6), ("desktop", 0.32), ("tablet", 0.08))
COUNTRIES = (("DE", "de", 0.45), ("AT", "de", 0.15), ("FR", "fr", 0.2), ("NL", "nl", 0.1),
             ("IT", "it", 0.1))


def weighted(rng: random.Random, choices: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    """One of ``choices`` by its last element, the weight."""
    return rng.choices(choices, weights=[choice[-1] for choice in choices])[0]
