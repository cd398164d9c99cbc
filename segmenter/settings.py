"""Settings: config/default.yaml, merged with SEGMENTER_CONFIG, then environment overrides.

Every value is validated once at start; a bad value raises :class:`SettingsError` whose
message names the setting (and the environment variable it came from, if any).

>>> settings = load_settings(environ={"SEGMENTER_METRICS_PORT": "9200"})
>>> settings.metrics.port, settings.kafka.topics.changes
(9200, 'segments.changes')
>>> try:
...     load_settings(environ={"SEGMENTER_METRICS_PORT": "nine"})
... except SettingsError as exc:
...     print(str(exc).split(":")[0])
metrics.port (from SEGMENTER_METRICS_PORT)
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from features.definitions import MODEL_FEATURES, feature_catalogue
from features.errors import BadConfig
from features.profile import FeatureParams
from segmenter.rule_file import load_rules
from segmenter.rules import Rule, RuleError
from segmenter.segmentation_settings import (
    BehaviorSettings,
    DemographicSettings,
    LifecycleSettings,
    RfmSegment,
    RfmSettings,
    RuleSettings,
    Segmentations,
    StrictModel,
    ValueSettings,
    ValueTier,
)

__all__ = ["BehaviorSettings", "DemographicSettings", "LifecycleSettings", "RfmSegment",
           "RfmSettings", "RuleSettings", "Segmentations", "Settings", "SettingsError",
           "StrictModel", "ValueSettings", "ValueTier", "load_settings", "redact"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"

#: Environment variable -> dotted setting it overrides.
ENV_OVERRIDES: dict[str, str] = {
    "SEGMENTER_KAFKA_BOOTSTRAP": "kafka.bootstrap",
    "SEGMENTER_REDIS_URL": "redis.url",
    "SEGMENTER_METRICS_PORT": "metrics.port",
    "SEGMENTER_METRICS_HOST": "metrics.host",
    "SEGMENTER_KAFKA_SECURITY_PROTOCOL": "kafka.security.protocol",
    "SEGMENTER_KAFKA_SASL_MECHANISM": "kafka.security.sasl_mechanism",
    "SEGMENTER_KAFKA_SASL_USERNAME": "kafka.security.sasl_username",
    "SEGMENTER_KAFKA_SASL_PASSWORD": "kafka.security.sasl_password",
    "SEGMENTER_KAFKA_SSL_CAFILE": "kafka.security.ssl_cafile",
    "SEGMENTER_RULES_FILE": "segmentations.rules.file",
}
#: Segmentation names a rule segment cannot take.
RESERVED_NAMES = frozenset({"rfm", "lifecycle", "behavior", "value_tier", "country", "age_band"})


class SettingsError(BadConfig):
    """A setting is missing or has a bad value; the message names it."""


class Topics(StrictModel):
    clicks: str = Field(min_length=1)
    carts: str = Field(min_length=1)
    orders: str = Field(min_length=1)
    #: Who the users are (profile traits), keyed and partitioned like the other inputs.
    profiles: str = Field("shop.profiles", min_length=1)
    deadletter: str = Field(min_length=1)
    changes: str = Field(min_length=1)
    #: Behaviour model versions (compacted, one partition) and the workers' statistics for
    #: the trainer (one partition: whoever owns it trains).
    behavior_model: str = Field(min_length=1)
    behavior_stats: str = Field(min_length=1)
    #: Identity handoffs between workers (partitioned like the inputs).
    identity: str = Field(min_length=1)
    #: Requests to forget a user (partitioned like the inputs, keyed by user id).
    forget: str = Field(min_length=1)

    @property
    def inputs(self) -> dict[str, str]:
        """Input topic name -> event kind."""
        return {self.clicks: "click", self.carts: "cart", self.orders: "order",
                self.profiles: "profile"}

    @property
    def by_kind(self) -> dict[str, str]:
        """Event kind -> input topic name."""
        return {kind: topic for topic, kind in self.inputs.items()}


class KafkaSecurity(StrictModel):
    """How the clients authenticate and encrypt (passed to aiokafka and Faust as they are).
    The password comes from the environment (``SEGMENTER_KAFKA_SASL_PASSWORD``) and is never
    printed."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    #: CA bundle to verify the brokers (empty: the system's); client certificate and key for
    #: mutual TLS (empty: none).
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSecurity:
        if self.protocol.startswith("SASL") and not (
                self.sasl_username and self.sasl_password.get_secret_value()):
            raise ValueError(f"protocol {self.protocol} needs sasl_username and sasl_password "
                             "(SEGMENTER_KAFKA_SASL_USERNAME, SEGMENTER_KAFKA_SASL_PASSWORD)")
        return self


class KafkaSettings(StrictModel):
    bootstrap: str = Field(pattern=r"^[^\s,]+:\d+(,[^\s,]+:\d+)*$")
    partitions: int = Field(ge=1, le=1024)
    replication_factor: int = Field(ge=1)
    session_timeout_s: float = Field(ge=1, le=300)
    fetch_max_wait_ms: int = Field(ge=1, le=60_000)
    # At start, how long to wait for the broker to be reachable before giving up.
    startup_wait_s: float = Field(ge=0, le=3600)
    security: KafkaSecurity = KafkaSecurity()
    topics: Topics


class RedisSettings(StrictModel):
    url: str = Field(pattern=r"^(redis|rediss|unix)://")
    key_prefix: str = Field(min_length=1, pattern=r"^[^\s{}]+$")


class MetricsSettings(StrictModel):
    host: str = Field(min_length=1)
    port: int = Field(ge=0, le=65535)


class WorkerSettings(StrictModel):
    batch_size: int = Field(ge=1, le=100_000)
    # ... and at most about this many bytes of message values (envelopes carry many events).
    batch_max_bytes: int = Field(ge=1024, le=64 * 2**20)
    # A worker with input waiting and no batch processed for this long exits (code 3), so that
    # its orchestrator restarts it (a lost group membership can leave a consumer idle for good).
    stall_timeout_s: float = Field(ge=5, le=3600)
    # After SIGTERM, a worker whose orderly stop has not finished by then (the broker or Redis
    # unreachable) exits anyway; unacknowledged input is read again by its successor.
    shutdown_timeout_s: float = Field(gt=0, le=600)
    # A change event whose event time is more than this behind the wall clock when it is
    # published carries "backfill": true (0: never), so automation skips last year's moments.
    backfill_after_minutes: float = Field(ge=0)
    # While catching up (the stream's event time over backfill_after_minutes behind the wall
    # clock): "coalesce" folds a user's events in and stores them unsettled, and evaluates
    # each user once the backlog is read, so their change events describe the state reached;
    # "each" evaluates and publishes every event.
    backfill_changes: Literal["coalesce", "each"]
    data_dir: Path
    # Events stamped further than this ahead of the wall clock are dead-lettered: one bad clock
    # must not push event time forward and age every user at once.
    max_clock_skew_s: float = Field(ge=0)
    log_level: Literal["crit", "error", "warn", "info", "debug"]
    # Quiet time: with every input partition read and no event for quiet_after_s, the clock of
    # time-driven reviews follows the wall clock less quiet_clock_lag_minutes (default: the
    # allowed lateness), so customers lapse on schedule when the shop is quiet.
    quiet_after_s: float = Field(60.0, gt=0, le=86_400)
    quiet_clock_lag_minutes: float | None = Field(None, ge=0)
    # The segment explorer's history (streams/segment_history.py): every segment's size,
    # entries and exits sampled at most this often, shop-wide; the latest samples are kept.
    history_interval_s: float = Field(3600.0, ge=1, le=86_400)
    history_samples: int = Field(720, ge=2, le=100_000)


class FeatureSettings(StrictModel):
    session_gap_minutes: float = Field(gt=0)
    allowed_lateness_minutes: float = Field(ge=0)
    windows_days: list[int] = Field(min_length=1)
    engagement_half_life_days: float = Field(gt=0)
    cart_abandon_hours: float = Field(gt=0)
    cart_expiry_days: float = Field(14.0, gt=0, le=3660)
    #: How long after it was placed an order can still be cancelled or refunded (see
    #: features.orders): older ones leave the order ledger, which keeps records small.
    orders_kept_days: float = Field(400.0, gt=0, le=3660)
    low_price: float = Field(ge=0)
    discount_categories: list[str] = Field(default_factory=list)
    #: The shop's currency, and the value of one unit of each other currency in it.
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    exchange_rates: dict[str, float] = Field(default_factory=dict)

    @field_validator("exchange_rates")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        for code, rate in value.items():
            if not re.fullmatch(r"[A-Z]{3}", code):
                raise ValueError(f"currency codes are three capital letters (ISO 4217), got "
                                 f"{code!r}")
            if not (math.isfinite(rate) and 0 < rate <= 1e6):
                raise ValueError(f"{code}: a rate is a positive number up to 1e6, got {rate}")
        return value

    @model_validator(mode="after")
    def _carts_expire_after_they_are_abandoned(self) -> FeatureSettings:
        if self.cart_expiry_days * 24 <= self.cart_abandon_hours:
            raise ValueError(f"cart_expiry_days ({self.cart_expiry_days}) must be longer than "
                             f"cart_abandon_hours ({self.cart_abandon_hours} h)")
        return self

    @field_validator("windows_days")
    @classmethod
    def _positive_windows(cls, value: list[int]) -> list[int]:
        if any(days < 1 or days > 3660 for days in value) or len(set(value)) != len(value):
            raise ValueError(f"must be distinct whole days between 1 and 3660, got {value}")
        return sorted(value)

    def params(self) -> FeatureParams:
        return FeatureParams(
            session_gap_s=self.session_gap_minutes * 60,
            lateness_s=self.allowed_lateness_minutes * 60,
            windows_days=tuple(self.windows_days),
            half_life_days=self.engagement_half_life_days,
            abandon_after_s=self.cart_abandon_hours * 3600,
            cart_expiry_s=self.cart_expiry_days * 86_400,
            # An order let go must be too late to arrive again (else a re-sent one would count
            # twice): never kept for less than the allowed lateness and a day.
            orders_kept_s=max(self.orders_kept_days * 1440, self.allowed_lateness_minutes + 1440)
            * 60,
            low_price=self.low_price,
            discount_categories=frozenset(self.discount_categories),
        )


class Settings(StrictModel):
    app_id: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    kafka: KafkaSettings
    redis: RedisSettings
    metrics: MetricsSettings
    worker: WorkerSettings
    features: FeatureSettings
    segmentations: Segmentations
    _rules: list[Rule] = PrivateAttr(default_factory=list)

    @property
    def rules(self) -> list[Rule]:
        """The compiled rule segments of ``segmentations.rules.file``."""
        return self._rules

    def segments_fingerprint(self) -> str:
        """Changes whenever anything that decides segments does: segmentations, rules,
        features (a user evaluated with another fingerprint is evaluated again)."""
        rules = [(rule.name, rule.text, rule.min_dwell_minutes) for rule in self.rules]
        text = orjson.dumps([self.segmentations.model_dump(mode="json"),
                             self.features.model_dump(mode="json"), rules])
        return hashlib.sha1(text).hexdigest()[:12]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a mapping at the top level")
    rules = data.get("segmentations", {}).get("rules") if isinstance(
        data.get("segmentations"), dict) else None
    if isinstance(rules, dict) and isinstance(rules.get("file"), str):
        # Relative to the config file that names it, not to wherever the worker starts.
        rules["file"] = str(path.parent / rules["file"])
    return data


def _load_rule_segments(settings: Settings) -> list[Rule]:
    path = settings.segmentations.rules.file
    known = feature_catalogue(tuple(settings.features.windows_days)) | MODEL_FEATURES
    try:
        rules = load_rules(path, known)
    except RuleError as exc:
        raise SettingsError(f"segmentations.rules.file: {exc}") from None
    taken = sorted(RESERVED_NAMES & {rule.name for rule in rules})
    if taken:
        raise SettingsError(f"segmentations.rules.file: {path}: segment names {taken} are "
                            "taken by built-in segmentations; rename them")
    return rules


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _set_dotted(data: dict[str, Any], dotted: str, value: str) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value


def _describe(error: Mapping[str, Any], env_sources: Mapping[str, str]) -> str:
    dotted = ".".join(str(part) for part in error["loc"])
    source = next((env for env, key in env_sources.items() if dotted == key), None)
    where = f"{dotted} (from {source})" if source else dotted or "config"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] in {"missing", "extra_forbidden"} or isinstance(error["input"], Mapping):
        return f"{where}: {message}"  # a section's values may hold secrets: not echoed
    if "password" in dotted or "url" in dotted:
        return f"{where}: {message} (got {redact(str(error['input']))!r})"
    return f"{where}: {message} (got {error['input']!r})"


def redact(url: str) -> str:
    """A URL with its password masked, for messages and logs.

    >>> redact("rediss://app:s3cret@redis:6380/0"), redact("redis://localhost:6379/0")
    ('rediss://app:***@redis:6380/0', 'redis://localhost:6379/0')
    """
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def load_settings(
    config_file: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load and validate settings; raise SettingsError naming every bad setting."""
    env = os.environ if environ is None else environ
    data = _read_yaml(DEFAULT_CONFIG)
    extra = config_file or env.get("SEGMENTER_CONFIG")
    if extra:
        data = _merge(data, _read_yaml(Path(extra)))
    used = {name: key for name, key in ENV_OVERRIDES.items() if env.get(name, "") != ""}
    for name, key in used.items():
        _set_dotted(data, key, env[name])
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError("; ".join(_describe(e, used) for e in exc.errors())) from None
    settings._rules = _load_rule_segments(settings)
    return settings
