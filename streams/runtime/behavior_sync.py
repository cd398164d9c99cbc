"""One behaviour model for all workers: statistics in, versions out, over two Kafka topics.

- Every worker sends its :class:`~segmenter.behavior.StatsDelta` with each batch it commits to
  ``behavior_stats`` (one partition), and follows ``behavior_model`` (one partition,
  compacted): each new version replaces the model it predicts with.
- The worker that owns input partition 0 is the trainer. It reads the statistics from just past
  the offset the latest version was built from (recorded in the version), so no statistics are
  lost or counted twice when the trainer moves to another worker or restarts, and publishes
  the versions :class:`~segmenter.behavior_trainer.BehaviorTrainer` makes.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from segmenter.behavior import BehaviorModel, StatsDelta
from segmenter.clv import ValueModel, fit_value_model
from segmenter.settings import Settings
from streams.runtime import metrics
from streams.runtime.kafka_options import client_options
from streams.runtime.state.changelog import QUIET_MS

if TYPE_CHECKING:
    from segmenter.behavior_trainer import BehaviorTrainer

log = logging.getLogger(__name__)

#: How often the fitting process looks whether the worker that started it is still there.
PARENT_CHECK_S = 1.0

MODEL_KEY = b"behavior"

OnModel = Callable[[BehaviorModel], Awaitable[None]]


async def read_latest_model(kafka: dict[str, Any], topic: str) -> BehaviorModel | None:
    """The newest version on the model topic (read to the end), or None before the first.
    ``kafka``: the clients' options (:func:`streams.runtime.kafka_options.client_options`)."""
    consumer = _consumer(kafka)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        latest: BehaviorModel | None = None
        while batch := await consumer.getmany(tp, timeout_ms=QUIET_MS):
            for message in batch.get(tp, []):
                latest = _newer(latest, message.value)
        return latest
    finally:
        await consumer.stop()


def _new_trainer(settings: Settings, latest: BehaviorModel | None) -> BehaviorTrainer:
    """Imported here: only the worker that trains needs the trainer's libraries (scikit-learn,
    SciPy's optimisers, River's drift detectors and, for a River clusterer, its preprocessing),
    and importing them took half of every worker's start (1.7 of 3.3 s on these machines).
    Called in a thread: on the event loop the imports held it as long, mid-stream."""
    from segmenter.behavior_trainer import BehaviorTrainer

    segmentations = settings.segmentations
    return BehaviorTrainer(segmentations.behavior, latest, segmentations.value)


class ModelSync:
    """Follows the model topic; trains and publishes while this worker is the trainer."""

    def __init__(self, settings: Settings, on_model: OnModel) -> None:
        self.settings = settings
        self.topics = settings.kafka.topics
        self.kafka = client_options(settings.kafka)
        self.on_model = on_model
        self.model: BehaviorModel | None = None
        self._trainer_task: asyncio.Task[None] | None = None

    async def follow(self) -> None:
        """Apply every version newer than the current one, for as long as the worker runs."""
        consumer = _consumer(self.kafka)
        await consumer.start()
        try:
            tp = TopicPartition(self.topics.behavior_model, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            while True:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                newest = self.model
                for message in batch.get(tp, []):
                    newest = _newer(newest, message.value)
                if newest is not self.model and newest is not None:
                    self.model = newest
                    await self.on_model(newest)
        finally:
            await consumer.stop()

    def lead(self, leading: bool) -> None:
        """Start or stop training as this worker gains or loses input partition 0."""
        task = self._trainer_task
        if task is None or task.done():
            if leading:
                self._trainer_task = asyncio.ensure_future(self._train())
        elif not leading:
            task.cancel()

    async def _train(self) -> None:
        kafka = self.kafka
        latest = await read_latest_model(kafka, self.topics.behavior_model)
        trainer = await asyncio.to_thread(_new_trainer, self.settings, latest)
        log.info("training the behaviour model from version %s",
                 latest.version if latest else "none")
        # The value model's fit (seconds of numerical optimisation, several times while a
        # backfill fills the sample) runs in a process of its own: in the trainer's thread it
        # held the interpreter a fifth of the time the event loop needed (measured).
        fits = fitting_processes()
        trainer.value.fit_model = _in_process(fits)
        consumer, producer = _consumer(kafka), AIOKafkaProducer(**kafka)
        await consumer.start()
        await producer.start()
        try:
            tp = TopicPartition(self.topics.behavior_stats, 0)
            consumer.assign([tp])
            consumer.seek(tp, trainer.offset + 1)
            interval = self.settings.segmentations.behavior.publish_interval_s
            drifts = 0
            while True:
                deadline = time.monotonic() + interval
                while (left := deadline - time.monotonic()) > 0:
                    batch = await consumer.getmany(tp, timeout_ms=int(left * 1000) + 1)
                    for message in batch.get(tp, []):
                        trainer.learn(StatsDelta.from_json(message.value), message.offset)
                        # A turn of the loop per message: a backfill's settling sends a
                        # message per slice of users, and a fetch of them held it 0.4 s.
                        await asyncio.sleep(0)
                drifts = metrics.record_drift(trainer.drift.estimation, trainer.drifts, drifts)
                model = await asyncio.to_thread(trainer.next_version, time.monotonic())
                if trainer.value.problem:
                    log.warning("%s; the previous value model stays", trainer.value.problem)
                    trainer.value.problem = None
                if model is not None:
                    await producer.send_and_wait(self.topics.behavior_model, model.to_json(),
                                                 key=MODEL_KEY)
                    log.info("published behaviour model version %d (%d segments: %s; value "
                             "model fitted on %d customers)", model.version, len(model.ids),
                             trainer.reason, model.value.customers if model.value else 0)
        except asyncio.CancelledError:
            raise
        except Exception:  # the trainer must not take the worker down; the next lead retries
            log.exception("behaviour model training stopped")
        finally:
            metrics.DRIFT_DISTANCE.set(0)  # another worker trains now; 0: not this one
            fits.shutdown(wait=False, cancel_futures=True)
            await consumer.stop()
            await producer.stop()


def fitting_processes() -> ProcessPoolExecutor:
    """One spawned process for the value model's fits, which exits when the worker does,
    however it ends (a worker killed with -9 must not leave it behind)."""
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_exit_with_parent, initargs=(os.getpid(),))


def _exit_with_parent(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)
    threading.Thread(target=watch, daemon=True).start()


def _in_process(fits: ProcessPoolExecutor) -> Callable[..., ValueModel]:
    """:func:`fit_value_model` run by ``fits`` (called from the trainer's thread); in the
    thread itself if that process died (killed, out of memory): slower, never lost."""
    def fit(*args: Any) -> ValueModel:
        try:
            return fits.submit(fit_value_model, *args).result()
        except BrokenProcessPool:
            log.warning("the value model's fitting process died; fitting in the worker")
            return fit_value_model(*args)
    return fit


def _consumer(kafka: dict[str, Any]) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(**kafka, enable_auto_commit=False, group_id=None,
                            fetch_max_wait_ms=QUIET_MS // 3)


def _newer(current: BehaviorModel | None, value: bytes | None) -> BehaviorModel | None:
    if value is None:
        return current
    model = BehaviorModel.from_json(value)
    return model if current is None or model.version > current.version else current
