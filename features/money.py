"""Amounts in the shop's currency: an event's prices and totals times its currency's rate.

A shop that sells in several currencies configures its own (``features.currency``) and the
value of one unit of each other currency in it (``features.exchange_rates``). An event without
``currency`` is in the shop's currency; an event in a currency without a rate is refused
(:class:`UnknownCurrency`, dead-lettered by the stream worker as ``unknown_currency``), never
counted raw: 100 JPY is not 100 EUR. Converted amounts are rounded to cents.

>>> euro = Currencies("EUR", {"USD": 0.9, "JPY": 0.006})
>>> from features.events import OrderEvent
>>> order = OrderEvent(event_id="e1", ts=1767225600, user_id="u1", order_id="o1",
...                    total=10000, currency="JPY")
>>> converted = euro.to_shop(order)
>>> converted.total, converted.currency
(60.0, 'EUR')
>>> try:
...     euro.to_shop(order.model_copy(update={"currency": "CHF"}))
... except UnknownCurrency as exc:
...     print(exc)
currency 'CHF' has no rate in features.exchange_rates (known: EUR, JPY, USD)
"""

from __future__ import annotations

from collections.abc import Mapping

from features.errors import BadInput
from features.events import MAX_MONEY, CartEvent, OrderEvent, ShopEvent


class UnknownCurrency(BadInput):
    """An event's amounts are in a currency the shop has no rate for."""


class AmountOutOfBounds(BadInput):
    """A converted amount is larger than the features' arithmetic holds."""


class Currencies:
    """Converts events' amounts to the shop's currency with fixed rates."""

    def __init__(self, shop: str, rates: Mapping[str, float]) -> None:
        """``rates``: currency -> the value of one unit of it in ``shop``'s currency."""
        self.shop = shop
        self.rates = {shop: 1.0, **{code: float(rate) for code, rate in rates.items()}}

    def to_shop(self, event: ShopEvent) -> ShopEvent:
        """The event with its amounts in the shop's currency (itself if nothing changes)."""
        if not isinstance(event, OrderEvent | CartEvent):
            return event
        code = event.currency or self.shop
        rate = self.rates.get(code)
        if rate is None:
            known = ", ".join(sorted(self.rates))
            raise UnknownCurrency(f"currency {code!r} has no rate in features.exchange_rates "
                                  f"(known: {known})")
        if code == self.shop:
            return event  # no currency means the shop's: nothing to convert
        if isinstance(event, CartEvent):
            return event.model_copy(update={"price": _convert(event.price, rate),
                                            "currency": self.shop})
        items = [item.model_copy(update={"price": _convert(item.price, rate)})
                 for item in event.items]
        refund = None if event.refund is None else _convert(event.refund, rate)
        return event.model_copy(update={"total": _convert(event.total, rate), "refund": refund,
                                        "items": items, "currency": self.shop})


def _convert(amount: float, rate: float) -> float:
    converted = round(amount * rate, 2)
    if converted > MAX_MONEY:
        raise AmountOutOfBounds(f"{amount} at rate {rate} is {converted:.0f}, more than "
                                f"{MAX_MONEY:.0f} in the shop's currency")
    return converted
