"""Streaming quantiles of the customer population, for F and M scores that follow the population.

Each customer contributes one value per dimension (number of orders, money spent). Values are
counted in bins, so a customer whose value changes is moved from one bin to another: the
histogram always describes the *current* population, not every value ever seen. Bins are exact
for order counts and 1% wide for money (money quantiles are within 1% of the exact ones).

A score is the quintile of the share of customers strictly below the customer's value, so ties
share a score and the lowest tie group always scores 1: where most customers bought once, they
all score F=1, and the next group (two orders) scores by the share below it. Without ties this
is the usual quintile. Scores
are frozen between refreshes; :meth:`Population.refresh` recomputes them and says which bins'
scores changed, so only the customers in those bins need a new look.

>>> population = Population()
>>> for n in range(1, 101):
...     population.update(f"u{n}", None, CustomerValues(orders=n, monetary=float(n)))
>>> changed = population.refresh()
>>> population.score("orders", 85), population.score("orders", 21), population.score("orders", 1)
(5, 2, 1)
>>> round(population.quantile("monetary", 0.5))
50
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

MONEY_BIN_RATIO = 1.01
DIMENSIONS = ("orders", "monetary")
#: The bin of customers who spent nothing (below every log bin).
ZERO_BIN = -(10**9)


@dataclass(frozen=True, slots=True)
class CustomerValues:
    orders: int
    monetary: float


def _bin(dimension: str, value: float) -> int:
    if dimension == "orders":
        return int(value)
    return ZERO_BIN if value <= 0 else math.floor(math.log(value) / math.log(MONEY_BIN_RATIO))


def _bin_value(dimension: str, index: int) -> float:
    """A representative value of a bin (its geometric middle for money)."""
    if dimension == "orders":
        return float(index)
    return 0.0 if index == ZERO_BIN else MONEY_BIN_RATIO ** (index + 0.5)


@dataclass(slots=True)
class _Frozen:
    """The population as of the last refresh: sorted bins, customers below each, scores."""

    bins: list[int]
    below: list[int]
    size: int
    scores: dict[int, int]

    def score(self, index: int) -> int:
        if index in self.scores:
            return self.scores[index]
        position = bisect.bisect_left(self.bins, index)
        below = self.below[position] if position < len(self.bins) else self.size
        return _quintile(below, self.size)


def _quintile(below: int, size: int) -> int:
    if not size:
        return 3
    return max(1, min(5, 1 + math.floor(5 * below / size)))


class Population:
    """Histograms of the customers' current values, with the users in each bin."""

    def __init__(self, partition_of: Callable[[str], int] = lambda user_id: 0) -> None:
        self.partition_of = partition_of
        self.counts: dict[str, Counter[int]] = {d: Counter() for d in DIMENSIONS}
        self.members: dict[str, defaultdict[int, set[str]]] = {
            d: defaultdict(set) for d in DIMENSIONS}
        self.size = 0
        self._frozen: dict[str, _Frozen] = {}
        #: Each counted customer's values (so a second count of the same user replaces).
        self.values: dict[str, CustomerValues] = {}
        #: Bin counts per input partition (a partition moves between workers whole), and the
        #: partitions changed since :meth:`take_pending`.
        self.by_partition: dict[int, dict[str, Counter[int]]] = {}
        self.dirty: set[int] = set()
        #: The shop-wide bin counts (all workers' customers), once a trainer published them;
        #: scores then come from them instead of this worker's own customers.
        self.shared: dict[str, Counter[int]] | None = None
        #: Customers counted, moved or dropped since the last refresh.
        self.changes = 0

    def update(self, user_id: str, old: CustomerValues | None,
               new: CustomerValues | None) -> None:
        """Replace a customer's contribution (None: not a customer).

        ``old`` is what the caller last counted; the population's own record of the user wins,
        so counting a user twice (a rebalance, a restart) replaces rather than adds.
        """
        old = self.values.get(user_id)
        if old == new:
            return
        self.changes += 1
        if new is None:
            del self.values[user_id]
        else:
            self.values[user_id] = new
        partition = self.partition_of(user_id)
        mine = self.by_partition.setdefault(partition, {d: Counter() for d in DIMENSIONS})
        self.dirty.add(partition)
        for values, step in ((old, -1), (new, 1)):
            if values is None:
                continue
            self.size += step
            for dimension in DIMENSIONS:
                index = _bin(dimension, getattr(values, dimension))
                self.counts[dimension][index] += step
                mine[dimension][index] += step
                if step > 0:
                    self.members[dimension][index].add(user_id)
                    continue
                self.members[dimension][index].discard(user_id)
                if not self.counts[dimension][index]:
                    del self.counts[dimension][index]
                    del self.members[dimension][index]

    def refresh(self) -> dict[str, set[int]]:
        """Recompute the scores from the current population; return bins whose score moved."""
        self.changes = 0
        moved: dict[str, set[int]] = {}
        for dimension in DIMENSIONS:
            frozen = self._freeze(dimension)
            previous = self._frozen.get(dimension)
            seen = set(frozen.bins) | set(previous.bins if previous else ())
            moved[dimension] = {
                index for index in seen
                if previous is None or frozen.score(index) != previous.score(index)}
            self._frozen[dimension] = frozen
        return moved

    def _freeze(self, dimension: str) -> _Frozen:
        counts = self.counts[dimension] if self.shared is None else self.shared[dimension]
        bins = sorted(index for index, count in counts.items() if count > 0)
        size = sum(counts[index] for index in bins)
        below, scores, seen = [], {}, 0
        for index in bins:
            count = counts[index]
            below.append(seen)
            scores[index] = _quintile(seen, size)
            seen += count
        return _Frozen(bins, below, size, scores)

    def take_pending(self) -> dict[int, dict[str, dict[int, int]]]:
        """The whole bin counts of each partition changed since the last call.

        Whole counts, not changes: the trainer keeps the latest per partition, so a restart
        or a partition moving to another worker replaces what was counted instead of adding.
        """
        pending = {p: {d: {i: n for i, n in self.by_partition[p][d].items() if n > 0}
                       for d in DIMENSIONS} for p in self.dirty}
        self.dirty.clear()
        return pending

    def use_shared(self, counts: dict[str, dict[int, int]]) -> dict[str, set[int]]:
        """Score by the shop-wide counts from now on; return the bins whose score moved."""
        self.shared = {d: Counter(counts.get(d, {})) for d in DIMENSIONS}
        return self.refresh()

    def retain(self, keep: Callable[[str], bool]) -> None:
        """Stop counting the customers ``keep`` rejects (their partition moved elsewhere).

        Their partitions are not reported: their new owner reports them whole.
        """
        gone = [u for u in self.values if not keep(u)]
        for user_id in gone:
            self.update(user_id, None, None)
        for partition in {self.partition_of(u) for u in gone}:
            self.dirty.discard(partition)
            self.by_partition.pop(partition, None)

    def score(self, dimension: str, value: float) -> int:
        """1-5 by the share of customers below, at the last refresh (3 before any)."""
        frozen = self._frozen.get(dimension)
        return 3 if frozen is None else frozen.score(_bin(dimension, value))

    def quantile(self, dimension: str, q: float) -> float:
        """The value below which a share ``q`` of the current customers lie."""
        if not self.size:
            return math.nan
        seen = 0
        for index in sorted(self.counts[dimension]):
            seen += self.counts[dimension][index]
            if seen >= q * self.size:
                return _bin_value(dimension, index)
        return _bin_value(dimension, max(self.counts[dimension]))

    def users_in(self, dimension: str, bins: Iterable[int]) -> set[str]:
        """The customers whose value is in one of ``bins``."""
        users: set[str] = set()
        for index in bins:
            users |= self.members[dimension].get(index, set())
        return users
