"""The shop events the engine consumes, validated.

Every event has ``event_id``, ``ts`` (ISO-8601 text or epoch seconds) and ``user_id`` and/or
``anonymous_id``. ``ts`` is normalised to epoch seconds (float, UTC); a timestamp without a
zone is taken as UTC.

>>> click = ClickEvent.model_validate(
...     {"event_id": "e1", "ts": "2026-01-02T03:04:05Z", "anonymous_id": "a1", "page": "/"})
>>> click.ts, click.entity_id
(1767323045.0, 'a1')
>>> OrderEvent.model_validate({"event_id": "e2", "ts": 1767323045, "user_id": "u1",
...     "order_id": "o1", "total": 25.5}).entity_id
'u1'
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

#: Numeric timestamps must be epoch seconds from 1970 up to 2100: a larger number is almost
#: always milliseconds, microseconds or nanoseconds. ISO-8601 text is unambiguous, so any
#: valid date is taken (a shop's export may start in 1997).
MAX_EPOCH_SECONDS = 4_102_444_800.0


def _epoch_seconds(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("must be ISO-8601 text or epoch seconds, not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds) or not 0 <= seconds < MAX_EPOCH_SECONDS:
            raise ValueError(f"epoch seconds {value!r} are not between 1970 and 2100 "
                             "(milliseconds? send seconds or ISO-8601 text)")
        return seconds
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not an ISO-8601 timestamp: {value!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    raise ValueError("must be ISO-8601 text or epoch seconds")


#: Bounds that the features' integer arithmetic (money in cents, counts) and storage (64-bit
#: integers in the stored JSON) hold with room to spare: ten billion of any currency per
#: amount (a weak currency's large order fits), ten thousand of one item, a thousand lines.
MAX_MONEY = 1e10
MAX_QUANTITY = 10_000
MAX_ITEMS = 1_000
MAX_PAGE_CHARS = 2_048

EpochSeconds = Annotated[float, BeforeValidator(_epoch_seconds)]
Identifier = Annotated[str, Field(min_length=1, max_length=256)]
Money = Annotated[float, Field(ge=0, le=MAX_MONEY, allow_inf_nan=False)]
Quantity = Annotated[int, Field(ge=0, le=MAX_QUANTITY)]


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


#: ISO 4217: three letters (upper case once normalised).
CurrencyCode = Annotated[str, BeforeValidator(_upper), Field(pattern=r"^[A-Z]{3}$")]
#: A short label a marketer matches in rules (a UTM value, a device, a city): lower case.
Label = Annotated[str, BeforeValidator(_lower), Field(min_length=1, max_length=64)]



def user_key(user_id: object, anonymous_id: object) -> str:
    """The one rule for whom an event is about, and its Kafka key: the customer's ``user_id``
    if the event has one, else the visitor's ``anonymous_id``.

    >>> user_key("u1", "a1"), user_key(None, "a7")
    ('u1', 'a7')
    """
    return str(user_id) if user_id is not None else str(anonymous_id)

class BaseEvent(BaseModel):
    """Fields every event has. Unknown extra fields are kept out of the model, not rejected."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    event_id: Identifier
    ts: EpochSeconds
    user_id: Identifier | None = None
    anonymous_id: Identifier | None = None

    @model_validator(mode="after")
    def _has_identity(self) -> BaseEvent:
        if self.user_id is None and self.anonymous_id is None:
            raise ValueError("needs user_id or anonymous_id")
        return self

    @property
    def entity_id(self) -> str:
        """Whom the event is about: the customer if known, else the anonymous visitor."""
        return user_key(self.user_id, self.anonymous_id)


class ClickEvent(BaseEvent):
    """A page or product view, with where the visit came from (UTM) and on what device."""

    kind: Literal["click"] = "click"
    page: Annotated[str, Field(min_length=1, max_length=MAX_PAGE_CHARS)]
    product_id: Identifier | None = None
    category: Identifier | None = None
    session_id: Identifier | None = None
    utm_source: Label | None = None
    utm_medium: Label | None = None
    utm_campaign: Label | None = None
    device: Label | None = None


class CartEvent(BaseEvent):
    """A change to the cart: an item added or removed, or the cart checked out."""

    kind: Literal["cart"] = "cart"
    action: Literal["add", "remove", "checkout"]
    product_id: Identifier | None = None
    category: Identifier | None = None
    price: Money = 0.0
    currency: CurrencyCode | None = None
    quantity: Quantity = 1

    @model_validator(mode="after")
    def _item_actions_name_a_product(self) -> CartEvent:
        if self.action != "checkout" and self.product_id is None:
            raise ValueError(f"action {self.action!r} needs product_id")
        return self


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    product_id: Identifier
    category: Identifier | None = None
    price: Money
    quantity: Annotated[Quantity, Field(ge=1)] = 1


class OrderEvent(BaseEvent):
    """An order placed, cancelled or refunded (in part with ``refund``, else in full); see
    :mod:`features.orders` for how they net out."""

    kind: Literal["order"] = "order"
    order_id: Identifier
    total: Money
    currency: CurrencyCode | None = None
    status: Literal["placed", "cancelled", "refunded"] = "placed"
    refund: Money | None = None
    items: list[OrderItem] = Field(default_factory=list, max_length=MAX_ITEMS)

    @model_validator(mode="after")
    def _refund_fits_the_order(self) -> OrderEvent:
        if self.refund is not None and self.status != "refunded":
            raise ValueError(f"refund is given but status is {self.status!r}, not 'refunded'")
        if self.refund is not None and self.refund > self.total:
            raise ValueError(f"refund {self.refund} is more than the order's total {self.total}")
        return self


class ProfileEvent(BaseEvent):
    """Who the user is and where: traits a shop knows (from an account, a form, a CRM). Each
    event sets the traits it carries; a trait it leaves out keeps its value."""

    kind: Literal["profile"] = "profile"
    country: Annotated[str, BeforeValidator(_upper), Field(pattern=r"^[A-Z]{2}$")] | None = None
    region: Label | None = None
    city: Label | None = None
    birth_year: Annotated[int, Field(ge=1900, le=2100)] | None = None
    age: Annotated[int, Field(ge=0, le=130)] | None = None
    gender: Label | None = None
    language: Annotated[str, BeforeValidator(_lower),
                        Field(pattern=r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")] | None = None
    marketing_consent: bool | None = None


ShopEvent = ClickEvent | CartEvent | OrderEvent | ProfileEvent

EVENT_TYPES: dict[str, type[ClickEvent] | type[CartEvent] | type[OrderEvent]] = {
    "click": ClickEvent,
    "cart": CartEvent,
    "order": OrderEvent,
    "profile": ProfileEvent,
}
