"""What the engine keeps per user (:class:`UserRecord`) and reports (:class:`SegmentChange`)."""

from __future__ import annotations

import functools
import hashlib
import math
import struct
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import lz4.block
import orjson

from features.profile import FeatureParams, UserFeatures
from segmenter.population import CustomerValues


@dataclass(frozen=True, slots=True)
class SegmentChange:
    """A user entered (previous is None), left (current is None) or moved between segments."""

    user_id: str
    segmentation: str
    previous: str | None
    current: str | None
    ts: float
    cause: str
    #: Set when a visitor's history moved into a customer's: the customer's id.
    merged_into: str | None = None
    #: For ``behavior`` changes: the model version that placed the user.
    model_version: int | None = None
    #: How many changes the user's record made before this one: a transition may recur with
    #: the same cause (two quantile shifts at one event time, while no input arrives), and
    #: each occurrence needs its own id.
    number: int = 0

    @property
    def event_id(self) -> str:
        """Deterministic: reprocessing the same cause from the same stored state yields the
        same id, so consumers dedupe."""
        parts = (self.user_id, self.segmentation, self.previous or "", self.current or "",
                 self.cause, str(self.number))
        return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:32]

    @property
    def type(self) -> str:
        if self.previous is None:
            return "enter"
        return "leave" if self.current is None else "move"

    def to_json(self, emitted_at: float, backfill_after_s: float = 0.0) -> bytes:
        """``backfill_after_s`` (> 0): a change whose event time is more than this behind
        ``emitted_at`` says ``"backfill": true`` (history caught up on, not a live moment)."""
        return orjson.dumps({
            "event_id": self.event_id,
            "type": self.type,
            "user_id": self.user_id,
            "segmentation": self.segmentation,
            "previous": self.previous,
            "current": self.current,
            "ts": _iso(self.ts),
            "emitted_at": _iso_cached(emitted_at),
            "cause": self.cause,
            "merged_into": self.merged_into,
            "model_version": self.model_version,
            "backfill": 0 < backfill_after_s < emitted_at - self.ts,
        })


#: First byte of a stored record in an LZ4 block (JSON starts with "{", zlib with 0x78).
LZ4_MARK = b"\x04"
#: First byte of a stored record that carries change events not known delivered (its outbox,
#: :mod:`streams.runtime.state.change_outbox`): a header (the LZ4 block's length, the write's
#: seq), the block, then the change events' JSON one per line, outside the block. Once they are
#: delivered the worker keeps only ``LZ4_MARK`` and the block in memory
#: (:func:`without_outbox`, a slice: no parsing); the changelog still has them for recovery.
#: In the block they had cost more than a quarter of an idle user's stored bytes, for good.
OUTBOX_MARK = b"\x05"
_OUTBOX_HEADER = struct.Struct(">IQ")
_OUTBOX_START = 1 + _OUTBOX_HEADER.size


def _outbox_parts(data: bytes) -> tuple[bytes, int, bytes] | None:
    """A stored record with an outbox (:data:`OUTBOX_MARK`): its LZ4 block, the write's seq
    and the outbox's lines; None for a record without one."""
    if data[:1] != OUTBOX_MARK:
        return None
    size, seq = _OUTBOX_HEADER.unpack_from(data, 1)
    end = _OUTBOX_START + size
    return data[_OUTBOX_START:end], seq, data[end:]


def _json_of(data: bytes) -> bytes:
    """A stored record's JSON: LZ4 (with or without an outbox after it), or as written by
    earlier versions, zlib or plain."""
    first = data[:1]
    if first == LZ4_MARK:
        return lz4.block.decompress(data[1:])
    parts = _outbox_parts(data)
    if parts is not None:
        return lz4.block.decompress(parts[0])
    return data if first == b"{" else zlib.decompress(data)


def outbox_of(data: bytes) -> tuple[int, list[str]]:
    """The seq and change events of a stored record's outbox ((0, []) for none)."""
    parts = _outbox_parts(data)
    return (0, []) if parts is None else (parts[1], parts[2].decode().split("\n"))


def without_outbox(data: bytes, delivered_seq: float = math.inf) -> bytes:
    """A stored record as kept once its outbox is delivered: without it if it was written by
    a write up to ``delivered_seq``, else the same bytes (also if it has none).

    >>> from features.profile import FeatureParams, UserFeatures
    >>> record = UserRecord(UserFeatures(FeatureParams()), outbox=['{"a":1}'], outbox_seq=7)
    >>> stored = record.to_bytes()
    >>> outbox_of(stored), outbox_of(without_outbox(stored))
    ((7, ['{"a":1}']), (0, []))
    >>> _json_of(without_outbox(stored)) == _json_of(stored)
    True
    >>> without_outbox(stored, delivered_seq=6) is stored  # written after what is delivered
    True
    """
    parts = _outbox_parts(data)
    return data if parts is None or parts[1] > delivered_seq else LZ4_MARK + parts[0]


@functools.lru_cache(maxsize=4)
def _iso_cached(ts: float) -> str:
    """A batch's changes share their ``emitted_at``: format it once."""
    return _iso(ts)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a stored record's user is placed, read without building their features: a sweep
    looks at every user at each behaviour model version, and most stay where they are
    (:meth:`segmenter.engine.SegmentEngine.keeps_placement`); parsing the features was
    most of a look.

    >>> from features.profile import FeatureParams, UserFeatures
    >>> record = UserRecord(UserFeatures(FeatureParams()), segments={"behavior": "b1"},
    ...                     behavior=["b1", [0.5]], behavior_version=3)
    >>> Placement.of(record.to_bytes())
    Placement(segments={'behavior': 'b1'}, behavior=['b1', [0.5]], behavior_version=3, \
evaluated_with='', valued_with='', unsettled=None)
    """

    segments: dict[str, str]
    behavior: list[Any] | None
    behavior_version: int
    evaluated_with: str
    valued_with: str
    unsettled: list[Any] | None

    @classmethod
    def of(cls, data: bytes) -> Placement:
        return cls.from_state(orjson.loads(_json_of(data)))

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Placement:
        """From a stored record's JSON (also :meth:`UserRecord.from_bytes`: one home for
        these fields' defaults)."""
        return cls(state["segments"], state.get("behavior"), state.get("behavior_version", 0),
                   state.get("evaluated_with", ""), state.get("valued_with", ""),
                   state.get("unsettled"))


#: Visitor ids a record remembers merging in and asking for: one per device or cleared
#: cookie, so without a bound they grew with a customer's history. A transfer is read again
#: only until its offset is committed (a batch, or a restart, later), never after 32 more of
#: the same customer's logins; a login from a visitor id forgotten here asks again, and what
#: it gets is only what that visitor did since (the released visitor's record is deleted).
VISITOR_IDS_KEPT = 32


@dataclass(slots=True)
class UserRecord:
    """Per-user state: features, current segment per segmentation, next time-driven review."""

    features: UserFeatures
    segments: dict[str, str] = field(default_factory=dict)
    review_at: float | None = None
    #: Event time the user entered their current segment, per segmentation.
    entered: dict[str, float] = field(default_factory=dict)
    #: What this user contributes to the customer population (None: not a customer).
    customer: CustomerValues | None = None
    #: Fingerprint of the segment settings the user was last evaluated with.
    evaluated_with: str = ""
    #: Fingerprint of the value model the user was last evaluated with ("" none).
    valued_with: str = ""
    #: What the user contributes to the behaviour model: [segment or None, vector].
    behavior: list[Any] | None = None
    #: The behaviour model version the user was last placed with (0: none yet).
    behavior_version: int = 0
    #: Visitor ids whose history was merged in (a login): each is merged once. The latest
    #: :data:`VISITOR_IDS_KEPT` (see :meth:`remember`).
    absorbed: list[str] = field(default_factory=list)
    #: Visitor ids whose history was asked for from the worker that owns them (the latest
    #: :data:`VISITOR_IDS_KEPT`).
    claimed: list[str] = field(default_factory=list)
    #: Change events (JSON) written with this state and not known delivered, and the number
    #: of the write that left them (see :mod:`streams.runtime.state.change_outbox`).
    outbox: list[str] = field(default_factory=list)
    outbox_seq: int = 0
    #: Segmentations whose current membership converted (an order within the conversion
    #: window of entering), so that it counts once (see :mod:`segmenter.kpis`).
    converted: list[str] = field(default_factory=list)
    #: Events folded in while catching up and not evaluated yet: [event time, event id] of
    #: the latest of them (the cause of what their evaluation changes), None once evaluated.
    unsettled: list[Any] | None = None
    #: Changes made so far (each change's :attr:`SegmentChange.number`).
    changes_made: int = 0

    @staticmethod
    def remember(visitor_ids: list[str], visitor_id: str) -> None:
        """Note a visitor id in :attr:`absorbed` or :attr:`claimed`, forgetting the oldest
        beyond :data:`VISITOR_IDS_KEPT`."""
        visitor_ids.append(visitor_id)
        del visitor_ids[:-VISITOR_IDS_KEPT]

    def next_change(self) -> int:
        """The number of the change being made, counted."""
        self.changes_made += 1
        return self.changes_made - 1

    def set_segment(self, segmentation: str, segment: str | None, now: float) -> None:
        """Enter ``segment`` of a segmentation at ``now`` (None: leave it)."""
        if segmentation in self.converted:  # a new membership converts anew
            self.converted.remove(segmentation)
        if segment is None:
            del self.segments[segmentation]
            self.entered.pop(segmentation, None)
        else:
            self.segments[segmentation] = segment
            self.entered[segmentation] = now

    def to_bytes(self) -> bytes:
        """JSON in an LZ4 block (marked by a first byte of 4): about 0.7 of the size, about a
        microsecond each way, and an exactly sized object (orjson's own result keeps its
        whole growth buffer, several KB, for as long as the store keeps it). An outbox follows
        the block (see :data:`OUTBOX_MARK`).

        >>> from features.profile import FeatureParams, UserFeatures
        >>> record = UserRecord(UserFeatures(FeatureParams()), segments={"rfm": "lost"})
        >>> UserRecord.from_bytes(record.to_bytes(), FeatureParams()).segments
        {'rfm': 'lost'}
        """
        # A stored record is kept parsed for its next load (streams.runtime.state.
        # parsed_records): without its last snapshot, which is not state (3 KB a record).
        self.features.forget_snapshot()
        block = lz4.block.compress(orjson.dumps({
            "features": self.features.to_dict(),
            "segments": self.segments,
            "review_at": self.review_at,
            "entered": self.entered,
            "customer": self.customer,
            "evaluated_with": self.evaluated_with,
            "valued_with": self.valued_with,
            "behavior": self.behavior,
            "behavior_version": self.behavior_version,
            "absorbed": self.absorbed,
            "claimed": self.claimed,
            "converted": self.converted,
            "unsettled": self.unsettled,
            "changes_made": self.changes_made,
        }))
        if not self.outbox:
            return LZ4_MARK + block
        return b"".join((OUTBOX_MARK, _OUTBOX_HEADER.pack(len(block), self.outbox_seq), block,
                         "\n".join(self.outbox).encode()))

    @classmethod
    def from_bytes(cls, data: bytes, params: FeatureParams) -> UserRecord:
        state: dict[str, Any] = orjson.loads(_json_of(data))
        outbox_seq, outbox = outbox_of(data)
        if not outbox:  # none, or one written inside the JSON by an earlier version
            outbox_seq, outbox = state.get("outbox_seq", 0), state.get("outbox", [])
        placed = Placement.from_state(state)
        return cls(
            features=UserFeatures.from_dict(state["features"], params),
            segments=placed.segments,
            review_at=state["review_at"],
            entered=state.get("entered", {}),
            customer=CustomerValues(**state["customer"]) if state.get("customer") else None,
            evaluated_with=placed.evaluated_with,
            valued_with=placed.valued_with,
            behavior=placed.behavior,
            behavior_version=placed.behavior_version,
            absorbed=state.get("absorbed", []),
            claimed=state.get("claimed", []),
            outbox=outbox,
            outbox_seq=outbox_seq,
            converted=state.get("converted", []),
            unsettled=placed.unsettled,
            changes_made=state.get("changes_made", 0),
        )
