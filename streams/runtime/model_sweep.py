"""A new behaviour model version, applied as every worker applies it: predict with it at once,
then re-place the users it moves and re-score the customers its population moves, in bounded
slices between other work (never all users in one turn of the event loop).

A regrouping publishes a version every few seconds, and most users stay where they are. A
version that changed only the centres re-evaluates only the users whose stored vector it moves
(:meth:`~segmenter.engine.SegmentEngine.keeps_placement`), read without parsing their records
(:class:`~segmenter.records.Placement`). Re-evaluating everyone was most of a sweep's work (a
full evaluation: 257-378 us a user here, now 16-33), and moved users by how their features had
aged since, beyond the churn the trainer budgets on those vectors; time moves users at their
scheduled reviews.

:class:`ModelSweep` holds the users still to re-place; :func:`review_slice` is one slice of a
worker's time-driven work (due reviews, re-scoring, then the sweep). The worker runs slices on
its review timer with Redis and Kafka behind them; the quality harness
(:mod:`streams.tools.quality.harness`) runs the same slices in process.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from segmenter.behavior import BehaviorModel
from segmenter.engine import SegmentEngine
from segmenter.records import Placement, UserRecord
from streams.runtime.batch import BatchProcessor
from streams.runtime.messages import BatchOutcome, LoadRecord

#: Users re-evaluated per slice of time-driven work (about 50 ms of the loop at most).
REVIEW_SLICE = 256


class ModelSweep:
    """The users (keys) still to re-evaluate under the latest behaviour model version."""

    def __init__(self, engine: SegmentEngine, processor: BatchProcessor,
                 placed: Callable[[str], Placement | None] = lambda user_id: None) -> None:
        """``placed``: where a stored user is placed, read without parsing their record
        (None: not known that way; the record is loaded)."""
        self.engine = engine
        self.processor = processor
        self.placed = placed
        self.pending: deque[bytes] = deque()

    def __len__(self) -> int:
        return len(self.pending)

    def apply(self, model: BehaviorModel, users: Callable[[], Iterable[bytes]]) -> bool:
        """Predict with ``model``; if it regroups anyone, queue ``users()`` to re-place, and
        queue the customers its shop-wide population re-scores. True if it regroups."""
        moved = self.engine.use_model(model)
        if moved and not self.pending:
            self.pending = deque(users())  # owned or not: checked when swept
        elif moved:
            # Mid-sweep (a regrouping publishes a version every publish_interval_s): on from the
            # next user to re-place, and round to those re-placed under an older version.
            # Starting over re-placed the same first users at every version and the last ones
            # never; a rotation of the listing costs about 50 ms of the loop for a million
            # users (a set of those waiting, to leave them out, 160 ms).
            listing = list(users())
            try:
                start = listing.index(self.pending[0])
            except ValueError:  # gone meanwhile
                start = 0
            self.pending = deque(listing[start:] + listing[:start])
        if model.population is not None:
            self.processor.queue_rescore(self.engine.use_population(model.population))
        return moved

    def step(self, outcome: BatchOutcome, load: LoadRecord, limit: int) -> int:
        """Look at up to ``limit`` users placed by an older version and re-evaluate those it
        may move (:meth:`~segmenter.engine.SegmentEngine.keeps_placement`); how many were
        taken."""
        behavior = self.engine.behavior
        if not self.pending or behavior is None or behavior.model is None:
            return 0
        version = behavior.model.version
        count = min(limit, len(self.pending))
        for _ in range(count):
            user_id = self.pending.popleft().decode()
            record = outcome.records.get(user_id)
            placed = record or self.placed(user_id)
            if placed is None:  # not readable without parsing the record
                placed = record = load(user_id)
            if placed is None or self._stays(placed, version):
                continue
            record = record or load(user_id)
            if record is None:
                continue
            outcome.changes += self.engine.reclassify(user_id, record, self.processor.watermark)
            outcome.records[user_id] = record
        return count

    def _stays(self, placed: UserRecord | Placement, version: int) -> bool:
        """Nothing to re-evaluate (and so nothing stored: a later version looks at the user
        again, as cheaply)."""
        return placed.behavior_version == version or self.engine.keeps_placement(placed)


def review_slice(
    processor: BatchProcessor, sweep: ModelSweep, load: LoadRecord, limit: int,
    sweep_limit: int, caught_up: Callable[[str, int], bool] = lambda topic, partition: True,
    coalesce_after_s: float | None = None,
) -> tuple[BatchOutcome, int, int]:
    """One slice of time-driven work, at most ``limit`` users: due reviews and re-scoring
    (:meth:`~streams.runtime.batch.BatchProcessor.review`), then up to ``sweep_limit`` of the
    sweep. Returns the outcome to commit, the users reviewed and the users swept.

    Nothing while a backfill's users wait to be settled: settling moves the population and
    evaluates them with the latest model anyway, so reviews, re-scoring and re-placing them
    now would publish changes that settling supersedes; all of it follows the settling."""
    if processor.unsettled:
        return BatchOutcome(), 0, 0
    outcome = processor.review(load, limit, caught_up, coalesce_after_s)
    reviewed = len(outcome.records)
    swept = sweep.step(outcome, load, min(sweep_limit, limit - reviewed))
    return outcome, reviewed, swept
