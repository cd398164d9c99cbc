"""What the explorer shows, read from Redis with the read side's own readers
(:class:`streams.tools.admin.reader.MembershipReader`,
:func:`streams.tools.admin.segment_kpis.segment_kpis`,
:func:`streams.runtime.segment_history.read_history`), and the figures derived from it.

>>> from streams.runtime.segment_history import Sample
>>> samples = [Sample(0.0, {"vip": (10, 4, 1)}), Sample(60.0, {"vip": (12, 7, 2)}),
...            Sample(120.0, {"vip": (10, 7, 4)})]
>>> flows(samples, "vip")
([(60.0, 3), (120.0, 0)], [(60.0, 1), (120.0, 2)])
>>> round(window_volatility(samples, "vip"), 3)  # (3 + 0 + 1 + 2) / mean size 32/3
0.562
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from segmenter.behavior import NAMES, behavior_vector
from segmenter.settings import Settings
from streams.runtime.segment_history import Sample, read_history
from streams.tools.admin.reader import MembershipReader
from streams.tools.admin.segment_kpis import Catalogue, segment_catalogue


class ExplorerStore:
    """The explorer's reads from Redis (one client, shared by the requests)."""

    def __init__(self, settings: Settings) -> None:
        self.prefix = settings.redis.key_prefix
        self.reader = MembershipReader(settings.redis.url, self.prefix)

    async def catalogue(self, histories: dict[str, list[Sample]] | None = None) -> Catalogue:
        """Segmentation -> segment -> profile with its KPIs (as ``segmenter segments``);
        ``histories`` gets the size histories read for the KPIs."""
        return await segment_catalogue(self.reader, self.prefix, histories)

    async def history(self, segmentation: str) -> list[Sample]:
        return await read_history(self.reader.client, self.prefix, segmentation)

    async def user(self, user_id: str) -> dict[str, str]:
        return await self.reader.user(user_id)

    async def close(self) -> None:
        await self.reader.close()


def sizes(samples: list[Sample], segment: str) -> list[tuple[float, float]]:
    """(time, members) of one segment, for the samples that list it."""
    return [(s.t, s.segments[segment][0]) for s in samples if segment in s.segments]


def flows(samples: list[Sample], segment: str
          ) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """Entries and exits between consecutive samples, at the later one's time. The samples
    hold totals; a total that went down (Redis lost the counters) counts as 0, not negative."""
    entries, exits = [], []
    listed = [s for s in samples if segment in s.segments]
    for before, after in itertools.pairwise(listed):
        _, in0, out0 = before.segments[segment]
        _, in1, out1 = after.segments[segment]
        entries.append((after.t, max(0, in1 - in0)))
        exits.append((after.t, max(0, out1 - out0)))
    return entries, exits


def window_volatility(samples: list[Sample], segment: str) -> float | None:
    """(entries + exits) / mean size over the samples' window; None without two samples or
    with an empty segment throughout."""
    entries, exits = flows(samples, segment)
    members = [size for _, size in sizes(samples, segment)]
    if not entries or not any(members):
        return None
    moved = sum(n for _, n in entries) + sum(n for _, n in exits)
    return moved / (sum(members) / len(members))


def behaviour_matrix(profiles: dict[str, dict[str, Any]]
                     ) -> tuple[list[tuple[str, str]], list[str], list[list[float]],
                                list[list[str]]]:
    """Behaviour segments x features: each cell's z-score among the segments (in the model's
    own space, :func:`segmenter.behavior.behavior_vector`; size-weighted), and the centre's
    value to show.

    So the map shows how the segments differ from one another, feature by feature; the
    values are the centres in the features' own units (docs/outputs.md, key_features)."""
    segments = sorted((s for s, p in profiles.items() if p.get("key_features")),
                      key=lambda s: -profiles[s].get("size", 0))
    rows = [(s, str(profiles[s].get("name", ""))) for s in segments]
    weights = [max(1.0, float(profiles[s].get("size", 0))) for s in segments]
    z: list[list[float]] = [[0.0] * len(NAMES) for _ in segments]
    shown = [[_shown(profiles[s]["key_features"].get(n)) for n in NAMES] for s in segments]
    vectors = [behavior_vector(profiles[s]["key_features"]) for s in segments]
    for j in range(len(NAMES)):
        column = [vector[j] for vector in vectors]
        total = sum(weights)
        mean = sum(w * v for w, v in zip(weights, column, strict=True)) / total if total else 0
        var = (sum(w * (v - mean) ** 2 for w, v in zip(weights, column, strict=True)) / total
               if total else 0)
        spread = math.sqrt(var)
        for i, value in enumerate(column):
            z[i][j] = (value - mean) / spread if spread > 1e-9 else 0.0
    return rows, list(NAMES), z, shown


def _shown(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:.2f}" if abs(value) < 1 and value else f"{value:,.4g}"
