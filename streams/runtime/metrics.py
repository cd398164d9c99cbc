"""Prometheus metrics of a worker; every name starts with ``segmenter_`` (served by
:mod:`streams.runtime.health`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

from segmenter.kpis import KpiCount

if TYPE_CHECKING:
    from streams.runtime.messages import BatchOutcome

EVENTS = Counter("segmenter_events", "Valid input events processed", ["topic"])
INVALID_EVENTS = Counter(
    "segmenter_invalid_events", "Input messages sent to the dead-letter topic", ["reason"]
)
MISROUTED_EVENTS = Counter(
    "segmenter_misrouted_events",
    "Events whose Kafka key is not their user (they are processed, but partitioning is off)",
)
SEGMENT_CHANGES = Counter(
    "segmenter_segment_changes",
    "Users entering or leaving segments",
    ["segmentation", "segment", "direction"],
)
SEGMENT_SIZE = Gauge("segmenter_segment_size", "Users in a segment", ["segmentation", "segment"])
LATENCY = Histogram(
    "segmenter_processing_latency_seconds",
    "From an event's production to its user's membership written to Redis",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
BATCH_SIZE = Histogram(
    "segmenter_batch_size",
    "Input messages per processed batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
REDIS_ERRORS = Counter("segmenter_redis_errors", "Failed Redis writes (retried)")
USER_FAILURES = Counter(
    "segmenter_user_failures",
    "Users whose events or evaluation raised (isolated: logged, the rest of the batch went on)",
)
USERS_REVIEWED = Counter(
    "segmenter_users_reviewed", "Users re-evaluated because event time moved on"
)
MODEL_VERSION = Gauge("segmenter_behavior_model_version",
                      "Behaviour model version this worker predicts with")
STAGE_SECONDS = Counter(
    "segmenter_stage_seconds",
    "Time the worker spent in each stage of the hot path (waiting for input included)",
    ["stage"],
)
LOOP_LAG = Gauge("segmenter_loop_lag_seconds",
                 "How late the event loop last woke a sleeping task (what held the loop)")
LOOP_LAG_MAX = Gauge("segmenter_loop_lag_max_seconds", "Largest loop lag since the start")
GC_SECONDS = Histogram(
    "segmenter_gc_seconds",
    "Garbage collections run between the worker's steps (streams.runtime.collector)",
    ["generations"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
GC_FROZEN = Gauge("segmenter_gc_frozen_objects",
                  "Objects kept out of the collector's view: freed when their last reference "
                  "goes; cycles among them wait for a full collection while idle")
INPUT_REREADS = Counter("segmenter_input_rereads_total",
                        "Times the input was read again from the committed offsets because "
                        "messages waited and nothing was processed (see streams.runtime.health)")
INPUT_LAG = Gauge("segmenter_input_lag_messages",
                  "Input messages waiting on this worker's partitions (high watermark - read)")
SEGMENT_KPIS = Counter(
    "segmenter_segment_kpi", "Segment KPI counts (segment \"\": the shop): entries, exits, "
    "quick_exits, orders, revenue_cents, conversions", ["segmentation", "segment", "kpi"])
UNSETTLED_USERS = Gauge(
    "segmenter_unsettled_users",
    "Users a coalescing backfill folded in and stored, waiting to be evaluated once the "
    "backlog is read (see docs/outputs.md)")
WATERMARK = Gauge("segmenter_watermark_seconds", "Event time the worker has reached (epoch s)")
PARTITION_LAG = Gauge("segmenter_input_partition_lag_messages",
                      "Input messages waiting on one assigned partition (high watermark - read)",
                      ["topic", "partition"])
#: The (topic, partition) label pairs PARTITION_LAG shows now.
_lagging: set[tuple[str, str]] = set()
DRIFT_DISTANCE = Gauge("segmenter_behavior_drift_distance",
                       "Trainer only: mean distance of changed users to their nearest centre, in "
                       "standard deviations, as ADWIN estimates it (a shift is drift)")
DRIFTS = Counter("segmenter_behavior_drifts",
                 "Trainer only: drifts ADWIN detected in users' distances to their centres")


def record_partition_lag(waiting: Iterable[tuple[Any, int | None]]) -> None:
    """Each assigned input partition's backlog; partitions assigned elsewhere since are dropped
    (a stale gauge would show lag that another worker now owns)."""
    known = {(where.topic, str(where.partition)): count for where, count in waiting
             if count is not None and hasattr(where, "topic")}
    for gone in _lagging - set(known):
        PARTITION_LAG.remove(*gone)
    for (topic, partition), count in known.items():
        PARTITION_LAG.labels(topic, partition).set(count)
    _lagging.clear()
    _lagging.update(known)


def record_drift(distance: float, detected: int, counted: int) -> int:
    """The trainer's drift watch; returns the detections counted so far."""
    DRIFT_DISTANCE.set(distance)
    DRIFTS.inc(max(0, detected - counted))
    return max(detected, counted)


def record_kpis(counts: list[KpiCount]) -> None:
    for count in counts:
        if count.amount > 0:  # a counter only grows: refunds and exits have counters of their own
            SEGMENT_KPIS.labels(count.segmentation, count.segment, count.name).inc(count.amount)


def record_sizes(sizes: dict[tuple[str, str], int]) -> None:
    """Segment sizes as Redis reported them."""
    for (segmentation, segment), size in sizes.items():
        SEGMENT_SIZE.labels(segmentation, segment).set(size)


def record_batch(
    outcome: BatchOutcome, sizes: dict[tuple[str, str], int], written_at: float, watermark: float
) -> None:
    """Count what one written batch did."""
    for topic, count in outcome.events_by_topic.items():
        EVENTS.labels(topic).inc(count)
    for dead in outcome.dead_letters:
        INVALID_EVENTS.labels(dead.reason).inc()
    if outcome.misrouted:
        MISROUTED_EVENTS.inc(outcome.misrouted)
    if outcome.failures:
        USER_FAILURES.inc(len(outcome.failures))
    for change in outcome.changes:
        if change.previous is not None:
            SEGMENT_CHANGES.labels(change.segmentation, change.previous, "leave").inc()
        if change.current is not None:
            SEGMENT_CHANGES.labels(change.segmentation, change.current, "enter").inc()
    for produced_at in outcome.produced_at:
        LATENCY.observe(max(0.0, written_at - produced_at))
    record_sizes(sizes)
    WATERMARK.set(watermark)
