"""The metrics added for the dashboard: input lag per partition, the trainer's drift watch."""

from __future__ import annotations

import numpy as np

from segmenter.behavior import DIMENSIONS, BehaviorModel, StatsDelta
from segmenter.behavior_trainer import BehaviorTrainer
from segmenter.settings import load_settings
from streams.runtime import metrics


def test_partition_lag_follows_the_assignment() -> None:
    """Partitions assigned elsewhere since disappear (their lag is another worker's now)."""

    class TopicPartition:
        def __init__(self, topic: str, partition: int) -> None:
            self.topic, self.partition = topic, partition

    def shown() -> dict[tuple[str, str], float]:
        return {(s.labels["topic"], s.labels["partition"]): s.value
                for family in metrics.PARTITION_LAG.collect() for s in family.samples}

    try:
        metrics.record_partition_lag([(TopicPartition("shop.clicks", 0), 7),
                                      (TopicPartition("shop.clicks", 1), None),
                                      (TopicPartition("shop.orders", 2), 0), ("inbox", 3)])
        assert shown() == {("shop.clicks", "0"): 7.0, ("shop.orders", "2"): 0.0}
        metrics.record_partition_lag([(TopicPartition("shop.orders", 2), 5)])
        assert shown() == {("shop.orders", "2"): 5.0}
    finally:
        metrics.record_partition_lag([])
    assert shown() == {}


def test_the_trainer_counts_drifts_and_the_metrics_follow() -> None:
    """Users drifting away from the centres: ADWIN's estimate rises, detections are counted
    once each, also across calls."""
    model = BehaviorModel(version=1, ids=["b1", "b2"],
                          centres=[[0.0] * DIMENSIONS, [4.0] * DIMENSIONS],
                          scale=[1.0] * DIMENSIONS)
    trainer = BehaviorTrainer(load_settings(environ={}).segmentations.behavior, model)
    rng = np.random.default_rng(3)

    def users(offset: float, first: int) -> StatsDelta:
        return StatsDelta(sample={f"u{first + n}": list(rng.normal(offset, 0.05, DIMENSIONS))
                                  for n in range(400)})

    drifts_before = metrics.DRIFTS._value.get()
    trainer.learn(users(0.0, 0), offset=0)
    assert trainer.drifts == 0
    counted = metrics.record_drift(trainer.drift.estimation, trainer.drifts, 0)
    near = metrics.DRIFT_DISTANCE._value.get()
    assert counted == 0 and near < 0.5
    trainer.learn(users(1.0, 400), offset=1)  # every user a whole SD per dimension away
    assert trainer.drifts >= 1
    counted = metrics.record_drift(trainer.drift.estimation, trainer.drifts, counted)
    assert counted == trainer.drifts
    assert metrics.DRIFT_DISTANCE._value.get() > near + 1.0
    assert metrics.DRIFTS._value.get() - drifts_before == trainer.drifts
    assert metrics.record_drift(0.0, trainer.drifts, counted) == counted  # nothing new
    assert metrics.DRIFTS._value.get() - drifts_before == trainer.drifts
