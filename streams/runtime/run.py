"""Starting a worker process: topics, metrics endpoint, then the Faust worker until stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import faust

from segmenter.settings import Settings
from streams.runtime import health
from streams.runtime.collector import COLLECTOR
from streams.runtime.topics import TopicSetupError, TopicUnreachableError, ensure_topics
from streams.runtime.worker import SegmentWorker

#: While the broker cannot be reached at start: seconds between attempts.
RETRY_S = 2.0


class _Worker(faust.Worker):
    """Faust's worker, with a deadline on the orderly stop that SIGTERM starts."""

    shutdown_timeout_s = 8.0
    snapshot_dir = Path(".")

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if not self._signal_stop_time:
            timer = threading.Timer(self.shutdown_timeout_s, _exit_unstopped,
                                    args=(self.shutdown_timeout_s,))
            timer.daemon = True
            timer.start()
        super()._schedule_shutdown(signal)

    def _on_sigusr2(self) -> None:
        """Not mode's debugger (a production worker has no terminal): under
        ``PYTHONTRACEMALLOC=N``, a tracemalloc snapshot in the data directory
        (``tracemalloc-<pid>-<monotonic ms>.snap``; compare two with ``compare_to``). Taking
        it holds the loop for seconds: a tool for a test bench, not for a busy worker."""
        if tracemalloc.is_tracing():
            name = f"tracemalloc-{os.getpid()}-{time.monotonic() * 1000:.0f}.snap"
            tracemalloc.take_snapshot().dump(str(self.snapshot_dir / name))


def _exit_unstopped(timeout_s: float) -> None:
    print(f"segmenter worker: not stopped {timeout_s:.0f} s after SIGTERM (broker or Redis "
          "unreachable?); exiting (worker.shutdown_timeout_s)", file=sys.stderr, flush=True)
    os._exit(1)


def run_worker(settings: Settings) -> int:
    if not _topics_ready(settings):
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
    COLLECTOR.start()
    runner = _Worker(worker.app, loglevel=settings.worker.log_level, quiet=True)
    runner.shutdown_timeout_s = settings.worker.shutdown_timeout_s
    runner.snapshot_dir = settings.worker.data_dir
    # Faust's start-up spinner sets the root logger to DEBUG (so that it turns on every log
    # record) and leaves it there: every debug call of aiokafka, Faust and mode then built a
    # log record only for the handler to drop it, a fifth of the worker's time per message.
    runner.spinner = None
    runner.execute_from_commandline()
    return 0


def _topics_ready(settings: Settings) -> bool:
    """Create the topics, waiting up to ``kafka.startup_wait_s`` for the broker to be up."""
    deadline = time.monotonic() + settings.kafka.startup_wait_s
    while True:
        try:
            asyncio.run(ensure_topics(settings))
            return True
        except TopicUnreachableError as exc:
            if time.monotonic() >= deadline:
                print(f"segmenter worker: {exc}; gave up after kafka.startup_wait_s = "
                      f"{settings.kafka.startup_wait_s:.0f} s", file=sys.stderr)
                return False
            print(f"segmenter worker: {exc}; retrying every {RETRY_S:.0f} s",
                  file=sys.stderr, flush=True)
            time.sleep(RETRY_S)
        except TopicSetupError as exc:
            print(f"segmenter worker: {exc}", file=sys.stderr)
            return False
