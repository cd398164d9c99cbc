"""Is the worker alive, ready and making progress? The loop's lag, a stall watchdog, and the
HTTP endpoints an orchestrator probes.

- **Loop lag**: a task sleeps :data:`TICK_S` at a time and measures how late it wakes up; the
  lateness is how long something else held the event loop (``segmenter_loop_lag_seconds``, and
  the largest seen, ``segmenter_loop_lag_max_seconds``).
- **Stall**: input waiting on an assigned partition (the consumer's high watermark past what it
  read) while no batch has been processed for ``worker.stall_timeout_s``. That is how a worker
  looks after it lost its group membership and never got going again; it exits with
  :data:`STALLED_EXIT_CODE` so that its orchestrator restarts it (nothing is lost: input is
  acknowledged only after its batch is written).
- **Blocked loop report**: a thread watches the loop's heartbeat; when the loop has not turned
  for :data:`BLOCKED_REPORT_S`, it logs the stack of what holds it, once per blocking, so the
  culprit of a lag spike is named in the log rather than guessed.
- **Endpoints**, on the metrics port: ``/health/live`` (200 unless the loop has not turned for
  :data:`LIVE_LOOP_S` or the worker stalled) and ``/health/ready`` (200 once the worker's state
  is recovered and while it is live); ``/metrics`` as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from streams.runtime import metrics

log = logging.getLogger(__name__)

TICK_S = 0.05
#: How often the stall watchdog looks (short, so that a stopping worker is not held up).
CHECK_S = 0.5
LIVE_LOOP_S = 10.0
BLOCKED_REPORT_S = 0.1
STALLED_EXIT_CODE = 3

#: (topic, partition) -> input messages waiting there (None: not known yet).
Backlog = Callable[[], Iterable[tuple[Any, int | None]]]


class WorkerHealth:
    """Shared between the event loop (which updates it) and the HTTP thread (which reads it)."""

    def __init__(self, stall_timeout_s: float) -> None:
        self.stall_timeout_s = stall_timeout_s
        self.ready = False
        self.stalled = False
        self.loop_turned_at = time.monotonic()
        self.progressed_at = time.monotonic()
        self.max_loop_lag = 0.0

    def progressed(self) -> None:
        """A batch was processed."""
        self.progressed_at = time.monotonic()

    def recovered(self) -> None:
        self.ready = True
        self.progressed_at = time.monotonic()

    @property
    def live(self) -> bool:
        return not self.stalled and time.monotonic() - self.loop_turned_at < LIVE_LOOP_S

    async def watch_loop(self, stopping: Callable[[], bool]) -> None:
        """Measure how late the loop wakes a sleeping task: what held it meanwhile."""
        self.loop_turned_at = time.monotonic()
        reporter = threading.Thread(target=self._report_blocked, args=(
            threading.get_ident(), stopping), name="blocked-loop-report", daemon=True)
        reporter.start()
        while not stopping():
            before = time.monotonic()
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            lag = max(0.0, now - before - TICK_S)
            self.loop_turned_at = now
            self.max_loop_lag = max(self.max_loop_lag, lag)
            metrics.LOOP_LAG.set(lag)
            metrics.LOOP_LAG_MAX.set(self.max_loop_lag)

    def _report_blocked(self, loop_thread: int, stopping: Callable[[], bool]) -> None:
        reported = 0.0
        while not stopping():
            time.sleep(BLOCKED_REPORT_S / 5)
            turned = self.loop_turned_at
            held = time.monotonic() - turned
            if held > BLOCKED_REPORT_S + TICK_S and turned != reported:
                reported = turned
                frame = sys._current_frames().get(loop_thread)
                stack = "".join(traceback.format_stack(frame)[-12:]) if frame else "?"
                log.warning("event loop held for %.2f s so far, by:\n%s", held, stack)

    async def watch_progress(self, backlog: Backlog, stopping: Callable[[], bool],
                             exit: Callable[[int], Any] = os._exit,
                             other_loops: Callable[[], Iterable[Any]] = tuple,
                             reread: Callable[[], Awaitable[Any]] | None = None,
                             describe: Callable[[], str] = str) -> None:
        """Exit when input waits and nothing has been processed for ``stall_timeout_s``.

        ``reread``: first, at a third of that, read the input again from the committed
        offsets. Faust drops records fetched for a partition that a rebalance or a recovery
        paused meanwhile, after the consumer's position has moved past them; nothing fetches
        them again until a seek, and the worker waits for input that never comes. Reading
        again from the committed offsets (from the beginning where nothing is committed yet:
        :meth:`streams.runtime.app._ConsumerThread.seek_to_committed`) is always safe
        (events count once by their id).
        ``describe``: the consumer's state (flow, paused partitions), logged with each.
        """
        reread_at: float | None = None
        while not stopping():
            await asyncio.sleep(min(CHECK_S, self.stall_timeout_s / 4))
            if stopping():
                return
            parts = list(backlog())
            waiting = sum(count or 0 for _, count in parts)
            metrics.INPUT_LAG.set(waiting)
            metrics.record_partition_lag(parts)
            idle = time.monotonic() - self.progressed_at
            if (reread is not None and waiting and self.ready and reread_at != self.progressed_at
                    and idle > self.stall_timeout_s / 3):
                reread_at = self.progressed_at  # once per stall
                log.warning("%d input messages wait and no batch was processed for %.0f s: "
                            "reading the input again from the committed offsets (%s)",
                            waiting, idle, _described(describe))
                metrics.INPUT_REREADS.inc()
                await reread()
                continue
            if waiting and self.ready and idle > self.stall_timeout_s:
                self.stalled = True
                log.error("worker stalled: %d input messages wait (%s) and no batch was "
                          "processed for %.0f s (lost group membership?); exiting with code %d "
                          "so that it is restarted; consumer: %s; its tasks:\n%s", waiting,
                          ", ".join(f"{where}: {count}" for where, count in parts if count),
                          self.stall_timeout_s, STALLED_EXIT_CODE, _described(describe),
                          task_stacks(loops=other_loops()))
                logging.shutdown()
                exit(STALLED_EXIT_CODE)
                return


def _described(describe: Callable[[], str]) -> str:
    """``describe()``, or why it failed: a stall's exit must not depend on it."""
    try:
        return describe()
    except Exception as exc:
        return f"cannot be described: {exc!r}"


def task_stacks(limit: int = 60, loops: Iterable[asyncio.AbstractEventLoop] = ()) -> str:
    """Where each task of this loop and of ``loops`` (another thread's, such as the Kafka
    consumer's) waits, down its chain of awaits (at most ``limit`` tasks a loop): what a
    stall is stuck on, so that the log names it."""
    tasks = list(asyncio.all_tasks())[:limit]
    for loop in loops:
        tasks += list(asyncio.all_tasks(loop))[:limit]
    lines = []
    for task in tasks:
        where = []
        awaiting: Any = task.get_coro()
        while awaiting is not None and len(where) < 12:
            frame = (getattr(awaiting, "cr_frame", None) or getattr(awaiting, "gi_frame", None)
                     or getattr(awaiting, "ag_frame", None))
            if frame is not None:
                where.append(f"{frame.f_code.co_name} "
                             f"({frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno})")
            awaiting = (getattr(awaiting, "cr_await", None)
                        or getattr(awaiting, "gi_yieldfrom", None)
                        or getattr(awaiting, "ag_await", None))
        lines.append(f"  {task.get_name()}: {' -> '.join(where) or 'not started'}")
    return "\n".join(lines)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(host: str, port: int, health: WorkerHealth) -> None:
    """Serve /metrics, /health/live and /health/ready in a background thread."""
    prometheus = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/health/live", "/health/ready"):
            ok = health.live if path.endswith("live") else health.live and health.ready
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"not ok\n"]
        return prometheus(environ, start_response)

    server = make_server(host, port, app, _Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
