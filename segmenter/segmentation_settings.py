"""The settings of each segmentation (``segmentations:`` in config/default.yaml), validated
once at start; :mod:`segmenter.settings` loads them with the rest."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StrictModel(BaseModel):
    """A settings block: unknown keys are errors, values never change after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RfmSegment(StrictModel):
    """Score ranges a segment takes: R, the rounded mean FM of F and M, and optionally F and
    M alone (e.g. first-time buyers are F=1 whatever they spent)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    r: tuple[int, int]
    fm: tuple[int, int] = (1, 5)
    f: tuple[int, int] = (1, 5)
    m: tuple[int, int] = (1, 5)
    description: str = ""

    @field_validator("r", "fm", "f", "m")
    @classmethod
    def _score_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1 <= low <= high <= 5:
            raise ValueError(f"must be [low, high] with 1 <= low <= high <= 5, got {list(value)}")
        return value


def _ascending_edges(value: list[float]) -> list[float]:
    if len(value) != 4 or any(b <= a for a, b in itertools.pairwise(value)):
        raise ValueError(f"must be 4 strictly ascending edges, got {value}")
    return value


class RfmSettings(StrictModel):
    scoring: Literal["quantiles", "edges"]
    recency_days: list[float]
    frequency_orders: list[float]
    monetary: list[float]
    segments: list[RfmSegment] = Field(min_length=1)
    #: quantiles: at most this long between refreshes of a worker's own quantiles while the
    #: number of customers stays put (a 2% change refreshes at once).
    quantile_refresh_s: float = Field(60.0, gt=0, le=86_400)

    _edges = field_validator("recency_days", "frequency_orders", "monetary")(_ascending_edges)

    @model_validator(mode="after")
    def _covers_every_score(self) -> RfmSettings:
        names = [segment.name for segment in self.segments]
        if len(set(names)) != len(names):
            raise ValueError(f"segment names must be unique, got {names}")
        for r, f, m in itertools.product(range(1, 6), repeat=3):
            if self.segment_for(r, f, m) is None:
                raise ValueError(f"no segment covers r={r}, f={f}, m={m}")
        return self

    def segment_for(self, r: int, f: int, m: int) -> str | None:
        """The first segment whose ranges take the scores; FM is the mean of F and M, halves
        rounded up."""
        fm = (f + m + 1) // 2
        for s in self.segments:
            if (s.r[0] <= r <= s.r[1] and s.fm[0] <= fm <= s.fm[1] and s.f[0] <= f <= s.f[1]
                    and s.m[0] <= m <= s.m[1]):
                return s.name
        return None


class LifecycleSettings(StrictModel):
    lapsing_after_days: float = Field(gt=0)
    churned_after_days: float = Field(gt=0)
    loyal_min_orders: int = Field(ge=3)

    @model_validator(mode="after")
    def _churn_after_lapse(self) -> LifecycleSettings:
        if self.churned_after_days <= self.lapsing_after_days:
            raise ValueError("churned_after_days must be greater than lapsing_after_days")
        return self


class RuleSettings(StrictModel):
    #: The marketers' rule file; a relative path is relative to the config file naming it.
    file: Path
    #: A user stays in a rule segment at least this long (event time) unless the rule says
    #: otherwise with its own min_dwell_minutes: a user near a threshold does not flap.
    min_dwell_minutes: float = Field(ge=0)


class BehaviorSettings(StrictModel):
    enabled: bool
    #: "trainer": k-means over every worker's statistics (docs/outputs.md); or one of River's
    #: clusterers (segmenter.clusterers.CANDIDATES) learning the trainer's sample, whose
    #: centres the trainer publishes instead.
    algorithm: Literal["trainer", "seeded_kmeans", "river_kmeans", "streamkmeans",
                       "dbstream", "denstream", "clustream"] = "trainer"
    #: A number of segments, or "auto": the best silhouette in auto_range on the reservoir.
    clusters: int | Literal["auto"]
    auto_range: tuple[int, int]
    #: Segments with a smaller share of the users are not created, or dropped.
    min_share: float = Field(ge=0, lt=0.5)
    #: Users sampled before the first fit; the reservoir keeps this many recent vectors.
    warmup_users: int = Field(ge=10)
    reservoir_size: int = Field(ge=10)
    #: Share of users whose vectors train the model (all are predicted).
    learn_sample: float = Field(gt=0, le=1)
    #: How often workers send statistics and the trainer considers a new version.
    publish_interval_s: float = Field(gt=0)
    #: A new version only when a centre moved this far (in standard deviations).
    min_centre_shift: float = Field(ge=0)
    refit_interval_s: float = Field(gt=0)
    #: A re-fit replaces the centres only if it lowers the reservoir's inertia this much.
    refit_gain: float = Field(gt=0, lt=1)
    #: A version moves at most this share of the sampled users whose vectors did not change
    #: (centre steps are shortened to fit), unless the grouping itself changed (a refit
    #: after drift, a segment merged away).
    max_churn: float = Field(0.005, ge=0, le=1)
    #: ADWIN's confidence over users' distances to their centres: smaller detects less.
    drift_delta: float = Field(0.002, gt=0, lt=1)
    #: Users re-evaluated per second after a new version.
    sweep_per_second: int = Field(ge=1)
    #: A placed user is looked at again this often (days): the vector holds days since the
    #: last order and visit, so time alone moves a quiet user towards another centre.
    review_days: float = Field(1.0, gt=0)
    seed: int

    @field_validator("clusters")
    @classmethod
    def _enough_clusters(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 2 <= value <= 50:
            raise ValueError(f"must be 'auto' or between 2 and 50, got {value}")
        return value

    @model_validator(mode="after")
    def _sizes(self) -> BehaviorSettings:
        low, high = self.auto_range
        if not 2 <= low <= high <= 50:
            raise ValueError(f"auto_range must be [low, high] with 2 <= low <= high <= 50, "
                             f"got {list(self.auto_range)}")
        if self.reservoir_size < self.warmup_users:
            raise ValueError("reservoir_size must be at least warmup_users")
        return self


class DemographicSettings(StrictModel):
    """Segmentations from profile traits: ``country`` (on or off) and ``age_band`` (its
    ascending band edges; empty: off)."""

    country: bool = True
    age_bands: list[int] = [18, 25, 35, 45, 55, 65]

    @field_validator("age_bands")
    @classmethod
    def _ascending(cls, value: list[int]) -> list[int]:
        if any(b <= a for a, b in itertools.pairwise(value)) or any(
                not 1 <= edge <= 130 for edge in value):
            raise ValueError(f"must be ascending ages between 1 and 130, got {value}")
        return value


class ValueTier(StrictModel):
    """A value tier: the customers whose predicted value ranks in the top ``top_share`` of
    all customers (cumulative: the tiers before it take their share first)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    top_share: float = Field(gt=0, le=1)
    description: str = ""


class ValueSettings(StrictModel):
    """Predicted customer lifetime value (:mod:`segmenter.clv`) and the ``value_tier``
    segmentation. The trainer fits the model on the customers of its sample (the behaviour
    reservoir), so it needs ``behavior.enabled``."""

    enabled: bool = True
    #: The prediction's horizon: ``predicted_value`` and ``expected_orders`` cover it.
    horizon_weeks: float = Field(52.0, gt=0, le=520)
    #: The trainer fits again this often (the population's habits change slowly).
    refit_interval_s: float = Field(3600.0, gt=0)
    #: Customers in the sample before the first fit (fewer give unstable parameters).
    min_customers: int = Field(200, ge=20)
    #: A customer's prediction decays with time without orders: re-evaluated this often.
    review_days: float = Field(7.0, gt=0)
    tiers: list[ValueTier] = Field(default_factory=lambda: [
        ValueTier(name="top", top_share=0.1, description="top 10% by predicted value"),
        ValueTier(name="high", top_share=0.3, description="next 20% by predicted value"),
        ValueTier(name="medium", top_share=0.6, description="next 30% by predicted value"),
        ValueTier(name="low", top_share=1.0, description="bottom 40% by predicted value"),
    ])

    @field_validator("tiers")
    @classmethod
    def _cumulative(cls, value: list[ValueTier]) -> list[ValueTier]:
        shares = [tier.top_share for tier in value]
        names = [tier.name for tier in value]
        if (not value or any(b <= a for a, b in itertools.pairwise(shares))
                or shares[-1] != 1.0 or len(set(names)) != len(names)):
            got = [[tier.name, tier.top_share] for tier in value]
            raise ValueError(f"must have unique names and strictly ascending top_share ending "
                             f"at 1.0, got {got}")
        return value


class Segmentations(StrictModel):
    rfm: RfmSettings
    lifecycle: LifecycleSettings
    rules: RuleSettings
    behavior: BehaviorSettings
    demographics: DemographicSettings = DemographicSettings()
    value: ValueSettings = ValueSettings()


