"""Starting a worker process: topics, metrics endpoint, then the Faust worker until stopped."""

from __future__ import annotations

import asyncio
import sys

import faust

from segmenter.settings import Settings
from streams import health
from streams.topics import TopicSetupError, ensure_topics
from streams.worker import SegmentWorker


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
    faust.Worker(
        worker.app, loglevel=settings.worker.log_level, quiet=True
    ).execute_from_commandline()
    return 0
