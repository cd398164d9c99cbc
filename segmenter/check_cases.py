"""What the contract checks (:mod:`segmenter.checks`, :mod:`segmenter.stored_checks`) try an
object on: the cases, and how a stored type goes on the wire and back."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from features.events import ShopEvent
from features.profile import UserFeatures

Features = Mapping[str, Any]
Journey = Sequence[tuple[float, Sequence[ShopEvent]]]


@dataclass(frozen=True)
class Codec:
    """How a stored type goes on the wire (Kafka, the changelog, Redis) and comes back."""

    dump: Callable[[Any], bytes]
    load: Callable[[bytes], Any]
    #: What must come back unchanged (None: the object itself, by ``==``); for types whose
    #: ``==`` does not compare content (identity, numpy arrays) or holds what is not kept
    #: (a day's zero amounts).
    content: Callable[[Any], Any] | None = None



@dataclass
class Cases:
    """What the checks try an object on: users' feature states at ``now``, a journey through
    the engine, and the stored types' codecs."""

    now: float
    users: Sequence[UserFeatures] = ()
    journey: Journey = ()
    journey_end: float = 0.0
    codecs: Mapping[type, Codec] = field(default_factory=dict)
    #: What segmentations read of a user at a time (``SegmentEngine.features_of``).
    features_of: Callable[[UserFeatures, float], dict[str, Any]] = UserFeatures.snapshot

