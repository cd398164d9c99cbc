"""What a batch's messages bring: valid events in the shop's currency, identity handoffs and
forget requests, and a dead letter (with its reason) for everything refused."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable
from itertools import islice

from features.events import ShopEvent
from features.money import AmountOutOfBounds, Currencies, UnknownCurrency
from segmenter.settings import Topics
from streams.runtime.codec import InvalidEvent, decode_message
from streams.runtime.messages import DeadLetter, Message
from streams.runtime.slices import SliceTimer

#: Messages decoded between two looks at the clock.
CHUNK = 200
#: Valid events with their messages, identity handoffs, forget requests.
Sorted = tuple[list[tuple[ShopEvent, Message]], list[Message], list[Message]]


class Admission:
    """Decodes and admits input messages: the first step of a batch."""

    def __init__(self, topics: Topics, currencies: Currencies, max_clock_skew_s: float) -> None:
        self.kinds = topics.inputs
        self.identity = topics.identity
        self.forget = topics.forget
        self.currencies = currencies
        self.max_clock_skew_s = max_clock_skew_s

    def sort(self, messages: Iterable[Message], dead_letters: list[DeadLetter],
             slices: SliceTimer | None = None) -> Generator[None, None, Sorted]:
        """Valid events with their messages (the rest dead-lettered), identity handoffs and
        forget requests. Pauses (a bare ``yield``) between chunks of messages once ``slices``
        says a slice is over."""
        decoded: list[tuple[ShopEvent, Message]] = []
        handoffs, forgets = [], []
        unread = iter(messages)
        while chunk := list(islice(unread, CHUNK)):
            for message in chunk:
                if message.topic in (self.identity, self.forget):
                    (handoffs if message.topic == self.identity else forgets).append(message)
                    continue
                for event in self.events(message, dead_letters):
                    decoded.append((event, message))
            if slices is not None:
                yield from slices.turn()
        return decoded, handoffs, forgets

    def events(self, message: Message, dead_letters: list[DeadLetter]) -> list[ShopEvent]:
        """A message's admitted events; one dead letter names every element refused."""
        kind = self.kinds.get(message.topic)
        if kind is None:
            dead_letters.append(DeadLetter(
                message, "unknown_topic", f"no event kind for topic {message.topic!r}"))
            return []
        events, invalid = [], []
        skew_limit = time.time() + self.max_clock_skew_s
        for event in decode_message(kind, message.value):
            if not isinstance(event, InvalidEvent):
                event = self.admit(event, skew_limit)
            if isinstance(event, InvalidEvent):
                invalid.append(event)
            else:
                events.append(event)
        if invalid:
            dead_letters.append(DeadLetter(
                message, invalid[0].reason, "; ".join(e.detail for e in invalid)))
        return events

    def admit(self, event: ShopEvent, skew_limit: float) -> ShopEvent | InvalidEvent:
        """The event in the shop's currency, or why it is refused (a clock far ahead, a
        currency without a rate)."""
        if event.ts > skew_limit:
            return InvalidEvent("ts_in_future", f"ts {event.ts:.0f} is more than "
                                f"{self.max_clock_skew_s:.0f}s ahead of now")
        try:
            return self.currencies.to_shop(event)
        except UnknownCurrency as exc:
            return InvalidEvent("unknown_currency", str(exc))
        except AmountOutOfBounds as exc:
            return InvalidEvent("invalid_field", str(exc))
