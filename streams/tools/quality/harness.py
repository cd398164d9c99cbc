"""The behaviour model's quality, measured in process on planted personas (no Kafka, no Redis).

:class:`ShopRun` drives the same code the workers run
(:class:`~streams.runtime.batch.BatchProcessor`, the engine and
:class:`~segmenter.behavior_trainer.BehaviorTrainer`) over simulated traffic, with users split
over ``workers`` processors the way Kafka partitions split them, the statistics of every batch
going to one trainer and each new version re-placing every user, as the workers' sweeps do.
Event time stands in for the clock: each batch is half a second.

>>> from segmenter.settings import load_settings
>>> run = ShopRun(load_settings(environ={}), workers=2)
>>> events, plans = plan_events(users=600, days=30, seed=3, end_ts=1_767_225_600.0)
>>> run.feed(events)
>>> run.settle()
>>> run.model.version > 0 and set(plans) <= set(run.assignments())
True
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from segmenter.behavior import BehaviorModel, behavior_vector
from segmenter.behavior_trainer import BehaviorTrainer
from segmenter.engine import SegmentEngine, UserRecord
from segmenter.settings import Settings
from streams.runtime.batch import BatchProcessor
from streams.runtime.messages import Message
from streams.runtime.model_sweep import REVIEW_SLICE, ModelSweep, review_slice
from streams.runtime.partitioning import user_partition
from streams.tools.traffic.personas import UserPlan, entity_id, plan_events

BATCH = 1000
SECONDS_PER_BATCH = 0.5
#: Versions a regrouping under way may publish after a batch. A batch of the compressed
#: stream stands for hours of a shop (90 days in about 150 batches), in which the workers'
#: trainer publishes a version every publish_interval_s: a regrouping, a step per version
#: (:mod:`segmenter.regrouping`), goes on between a shop's events.
REGROUP_ROUNDS = 25


@dataclass(slots=True)
class _Worker:
    engine: SegmentEngine
    processor: BatchProcessor
    sweep: ModelSweep
    store: dict[str, UserRecord]


class ShopRun:
    """Simulated workers and one trainer, fed event dicts in the input contract form."""

    def __init__(self, settings: Settings, workers: int = 1, partitions: int = 4,
                 count_churn: bool = True) -> None:
        """``count_churn``: measure :attr:`version_churn` (every user's vector, per version:
        a fifth of the run's time; off where only the outcome matters)."""
        # A compressed history plays months in seconds: no event may count as too late.
        features = settings.features.model_copy(update={"allowed_lateness_minutes": 10**8})
        self.settings = settings.model_copy(update={"features": features})
        self.partitions = partitions
        self.workers = [self._worker() for _ in range(workers)]
        self.trainer = BehaviorTrainer(settings.segmentations.behavior,
                                       value=settings.segmentations.value)
        self.model: BehaviorModel | None = None
        self.clock = 0.0
        self.offset = 0
        #: Behaviour changes by cause: "event" (the user's own events) or "model" (a new version).
        self.changes: Counter[str] = Counter()
        self.sweep_seconds = 0.0
        self.swept = 0
        #: Users whose own events were processed since the last version.
        self.touched: set[str] = set()
        #: Per version after the first: (version, quiet users it moved, quiet users, whether
        #: it began a regrouping: a refit or a merge, taken a step per version); quiet: no
        #: new events since the previous version. Moved: placed elsewhere by the new
        #: version than by the previous one, on the same vectors (time passing moves users
        #: whatever the version; that is not the model's doing).
        self.version_churn: list[tuple[int, int, int, bool]] = []
        self.regroupings_seen = 0
        self.count_churn = count_churn
        #: Every user's behaviour vector each time their events changed it, in order (kept
        #: when ``record_vectors`` is set: the stream other clusterers learn from).
        self.record_vectors = False
        self.vector_stream: list[tuple[str, list[float]]] = []
        #: Batches delivered, and the vectors last computed, with the state they were for.
        self.delivered = 0
        self._vectors: tuple[Any, dict[str, list[float]]] | None = None

    def _worker(self) -> _Worker:
        engine = SegmentEngine(self.settings, self.partition)
        processor = BatchProcessor(engine, self.settings.kafka.topics, 10**12)
        return _Worker(engine, processor, ModelSweep(engine, processor), {})

    def feed(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Process events in batches of 1000; after each, train and apply any new version."""
        batch: list[Mapping[str, Any]] = []
        for event in events:
            batch.append(event)
            if len(batch) == BATCH:
                self._process(batch)
                batch = []
        if batch:
            self._process(batch)

    def settle(self, rounds: int = 40) -> None:
        """Let the trainer go on without new events until the model stops changing."""
        quiet = 0
        for _ in range(rounds):
            self.clock += 5 * self.settings.segmentations.behavior.publish_interval_s
            quiet = 0 if self._train_on() else quiet + 1
            if quiet >= 3:
                return

    def _process(self, batch: list[Mapping[str, Any]]) -> None:
        topics = self.settings.kafka.topics.by_kind
        routed = [(topics[event["kind"]], entity_id(event),
                   orjson.dumps({k: v for k, v in event.items() if k != "kind"}))
                  for event in batch]
        while routed:  # identity handoffs go round until every login is settled
            routed = self._deliver(routed)
        self.clock += SECONDS_PER_BATCH
        self._train_on()

    def _train_on(self) -> bool:
        """A round of training, and the rest of a regrouping it is in (up to
        :data:`REGROUP_ROUNDS` versions); whether it published a version."""
        published = self._train()
        for _ in range(REGROUP_ROUNDS):
            if self.trainer.regrouping is None or not self._train():
                break
        return published

    def _deliver(self, routed: list[tuple[str, str, bytes]]) -> list[tuple[str, str, bytes]]:
        """Messages to the workers owning their keys' partitions; the handoffs they send."""
        shares: list[list[Message]] = [[] for _ in self.workers]
        for topic, key, body in routed:
            partition = self.partition(key)
            shares[partition % len(self.workers)].append(
                Message(topic, partition, 0, key.encode(), body, 0.0))
        handoffs = []
        identity = self.settings.kafka.topics.identity
        self.delivered += 1
        for n, (worker, messages) in enumerate(zip(self.workers, shares, strict=True)):
            if messages:
                def owns(user_id: str, n: int = n) -> bool:
                    return self.partition(user_id) % len(self.workers) == n
                outcome = worker.processor.process(messages, worker.store.get, owns)
                if self.count_churn:
                    self.touched.update(outcome.records)
                if self.record_vectors:
                    now = worker.processor.watermark
                    self.vector_stream += [(user, behavior_vector(record.features.snapshot(now)))
                                           for user, record in outcome.records.items()]
                handoffs += [(identity, key, value) for key, value in outcome.handoffs]
                self._commit(worker, outcome)
        return handoffs

    def partition(self, key: str) -> int:
        return user_partition(key, self.partitions)

    def _commit(self, worker: _Worker, outcome: Any) -> None:
        for user_id, record in outcome.records.items():
            if user_id in outcome.deleted:
                worker.store.pop(user_id, None)
            else:
                worker.store[user_id] = record
        for change in outcome.changes:
            if change.segmentation == "behavior":
                self.changes["model" if change.cause.startswith("model@") else "event"] += 1
        pending = worker.engine.take_statistics()
        if pending is not None:
            self.trainer.learn(pending, self.offset)
            self.offset += 1

    def _train(self) -> bool:
        model = self.trainer.next_version(self.clock)
        if model is None:
            return False
        if self.count_churn:
            self._count_churn(self.model, model)
        self.model = model
        started = time.perf_counter()
        for worker in self.workers:
            store = worker.store
            worker.sweep.apply(model, lambda store=store: [user.encode() for user in store])
            # The worker's review ticks, back to back: every slice until nothing is due.
            while True:
                outcome, reviewed, swept = review_slice(worker.processor, worker.sweep,
                                                        store.get, REVIEW_SLICE, REVIEW_SLICE)
                self.swept += swept
                if outcome.records or outcome.changes:
                    self._commit(worker, outcome)
                if reviewed + swept < REVIEW_SLICE:
                    break
        self.sweep_seconds += time.perf_counter() - started
        return True

    def _count_churn(self, previous: BehaviorModel | None, model: BehaviorModel) -> None:
        # A regrouping's versions come several to a batch: without events or a clock moved
        # in between, every vector is as it was (computing them took a quarter of a run).
        state = (self.delivered, tuple(w.processor.watermark for w in self.workers))
        if self._vectors is None or self._vectors[0] != state:
            self._vectors = (state, self.vectors())
        vectors = {user: vector for user, vector in self._vectors[1].items()
                   if user not in self.touched}
        self.touched.clear()
        began = self.trainer.regroupings > self.regroupings_seen
        self.regroupings_seen = self.trainer.regroupings
        if previous is None or not vectors:
            return
        points = list(vectors.values())
        moved = sum(1 for old, new in zip(previous.predict_many(points),
                                          model.predict_many(points), strict=True) if old != new)
        self.version_churn.append((model.version, moved, len(points), began))

    def assignments(self, segmentation: str = "behavior") -> dict[str, str | None]:
        """User -> segment of ``segmentation``, over every worker."""
        return {user_id: record.segments.get(segmentation)
                for worker in self.workers for user_id, record in worker.store.items()}

    def vectors(self) -> dict[str, list[float]]:
        """User -> behaviour vector as of each worker's watermark."""
        return {user_id: behavior_vector(record.features.snapshot(worker.processor.watermark))
                for worker in self.workers for user_id, record in worker.store.items()}


def ari_against_personas(assignments: Mapping[str, str | None],
                         plans: Mapping[str, UserPlan]) -> float:
    users = [user for user in plans if user in assignments]
    return adjusted_rand_score([plans[u].persona for u in users],
                               [str(assignments[u]) for u in users])


def ari_against_offline_kmeans(assignments: Mapping[str, str | None],
                               vectors: Mapping[str, list[float]], clusters: int) -> float:
    """ARI against scikit-learn KMeans fitted offline on the same (standardised) vectors."""
    users = sorted(vectors)
    points = np.asarray([vectors[u] for u in users])
    points = points / np.maximum(points.std(axis=0), 1e-9)
    labels = KMeans(clusters, n_init=10, random_state=0).fit_predict(points)
    return adjusted_rand_score(labels, [str(assignments[u]) for u in users])


def agreement(first: Mapping[str, str | None], second: Mapping[str, str | None]) -> float:
    """Share of common users placed alike, once the two runs' ids are matched one to one."""
    users = sorted(set(first) & set(second))
    a_ids = sorted({str(first[u]) for u in users})
    b_ids = sorted({str(second[u]) for u in users})
    table = np.zeros((len(a_ids), len(b_ids)))
    for user in users:
        table[a_ids.index(str(first[user])), b_ids.index(str(second[user]))] += 1
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(users)) if users else 1.0


__all__ = ["ShopRun", "agreement", "ari_against_offline_kmeans", "ari_against_personas",
           "plan_events"]
