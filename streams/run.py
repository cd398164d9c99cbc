"""Starting a worker process: topics, metrics endpoint, then the Faust worker until stopped."""

from __future__ import annotations

import asyncio
import gc
import sys

import faust

from segmenter.settings import Settings
from streams import health
from streams.topics import TopicSetupError, ensure_topics
from streams.worker import SegmentWorker

#: Allocations before a young collection, and collections before the older generations'.
GC_THRESHOLDS = (50_000, 20, 100)


def run_worker(settings: Settings) -> int:
    try:
        asyncio.run(ensure_topics(settings))
    except TopicSetupError as exc:
        print(f"segmenter worker: {exc}", file=sys.stderr)
        return 1
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = SegmentWorker(settings)
    try:
        health.serve(settings.metrics.host, settings.metrics.port, worker.health)
    except OSError as exc:
        print(f"segmenter worker: cannot serve metrics on {settings.metrics.host}:"
              f"{settings.metrics.port} (metrics.port): {exc}", file=sys.stderr)
        return 1
    settings.worker.data_dir.mkdir(parents=True, exist_ok=True)
    # The worker keeps hundreds of thousands of small long-lived objects (records waiting in a
    # backfill, the population, schedules); with the default thresholds a full collection
    # walks them all every few batches, holding the loop for a tenth of a second and more as
    # they grow. What is loaded by now is never garbage; collect less often.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    runner = faust.Worker(worker.app, loglevel=settings.worker.log_level, quiet=True)
    # Faust's start-up spinner sets the root logger to DEBUG (so that it turns on every log
    # record) and leaves it there: every debug call of aiokafka, Faust and mode then built a
    # log record only for the handler to drop it, a fifth of the worker's time per message.
    runner.spinner = None
    runner.execute_from_commandline()
    return 0
