"""Who a user is and how they come: profile traits and the channels and devices of their visits.

Traits (country, region, city, birth year, gender, language, marketing consent) come from
profile events; each takes the value of the latest event (in event time) that carries it, so the
result does not depend on arrival order. An ``age`` is kept as the birth year it implies at the
event's time. Channels count the clicks per UTM source, medium and device; the preferred one is
the most frequent (ties: alphabetical), the first one is that of the earliest click with a source.

>>> traits = Traits()
>>> traits.learn(100.0, {"country": "DE", "marketing_consent": True})
>>> traits.learn(50.0, {"country": "FR", "city": "lyon"})  # older: the country stays DE
>>> traits.value("country"), traits.value("city"), traits.value("gender")
('DE', 'lyon', None)
>>> channels = Channels()
>>> for ts, source in [(3.0, "google"), (1.0, "newsletter"), (2.0, "google")]:
...     channels.learn(ts, {"source": source, "device": "mobile"})
>>> channels.preferred("source"), channels.first_source(), channels.preferred("medium")
('google', 'newsletter', None)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TRAITS = ("country", "region", "city", "birth_year", "gender", "language", "marketing_consent")
CHANNEL_KINDS = ("source", "medium", "campaign", "device")
#: Distinct values counted per kind (a campaign-per-day shop would grow without bound); past
#: it, new values are not counted (the preferred one is then among the first 32 seen).
MAX_VALUES = 32


@dataclass(slots=True)
class Traits:
    """trait -> [value, event time it was set at]."""

    values: dict[str, list[Any]] = field(default_factory=dict)

    def learn(self, ts: float, traits: dict[str, Any]) -> None:
        for name, value in traits.items():
            held = self.values.get(name)
            if held is None or (ts, repr(value)) >= (held[1], repr(held[0])):
                self.values[name] = [value, ts]

    def value(self, name: str) -> Any:
        held = self.values.get(name)
        return None if held is None else held[0]

    def merge(self, other: Traits) -> None:
        for name, (value, ts) in other.values.items():
            self.learn(ts, {name: value})

    def to_state(self) -> dict[str, list[Any]]:
        return self.values

    @classmethod
    def from_state(cls, state: dict[str, list[Any]] | None) -> Traits:
        return cls({name: list(held) for name, held in (state or {}).items()})


@dataclass(slots=True)
class Channels:
    """kind -> value -> clicks; and the earliest click that named a source: [ts, source]."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    first: list[Any] | None = None

    def learn(self, ts: float, seen: dict[str, str | None]) -> None:
        for kind, value in seen.items():
            if value is None:
                continue
            counts = self.counts.setdefault(kind, {})
            if value in counts or len(counts) < MAX_VALUES:
                counts[value] = counts.get(value, 0) + 1
        source = seen.get("source")
        if source is not None and (self.first is None or (ts, source) < tuple(self.first)):
            self.first = [ts, source]

    def preferred(self, kind: str) -> str | None:
        counts = self.counts.get(kind)
        if not counts:
            return None
        return min(counts, key=lambda value: (-counts[value], value))

    def first_source(self) -> str | None:
        return None if self.first is None else self.first[1]

    def merge(self, other: Channels) -> None:
        for kind, counts in other.counts.items():
            for value, count in counts.items():
                mine = self.counts.setdefault(kind, {})
                if value in mine or len(mine) < MAX_VALUES:
                    mine[value] = mine.get(value, 0) + count
        if other.first is not None and (self.first is None
                                        or tuple(other.first) < tuple(self.first)):
            self.first = list(other.first)

    def to_state(self) -> dict[str, Any]:
        return {"counts": self.counts, "first": self.first}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Channels:
        if not state:
            return cls()
        return cls({kind: dict(counts) for kind, counts in state["counts"].items()},
                   None if state["first"] is None else list(state["first"]))
