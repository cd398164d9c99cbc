"""What the demo and the benchmark run beside the worker: broker, Redis, worker process.

Kafka and Redis come from the environment when SEGMENTER_KAFKA_BOOTSTRAP / SEGMENTER_REDIS_URL
are set; otherwise an embedded Tansu broker and a private redis-server are started, and stopped
again on exit together with the worker, so nothing is left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from segmenter.settings import Settings, load_settings
from streams.tools.local.embedded import EmbeddedKafka, EmbeddedRedis, free_port, kill_with_parent


@contextlib.contextmanager
def local_services(
    settings: Settings, app_id: str, history_days: float | None,
    backfill_changes: str | None = None, history_interval_s: float | None = None,
) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Yield settings pointing at running Kafka and Redis, and the env a worker needs.

    Simulated traffic plays ``history_days`` of event time in seconds, so the three input
    topics drift apart by days of event time; the allowed lateness covers the whole history
    (None: the configured lateness). ``backfill_changes``: the worker's setting of that name
    (None: the configured one); ``history_interval_s`` likewise.
    """
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("SEGMENTER_KAFKA_BOOTSTRAP") or stack.enter_context(
            EmbeddedKafka()).bootstrap
        redis_url = os.environ.get("SEGMENTER_REDIS_URL") or stack.enter_context(
            EmbeddedRedis()).url
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="segmenter-")))
        overrides = data_dir / "overrides.yaml"
        overrides.write_text(
            f"app_id: {app_id}\nworker:\n  data_dir: {data_dir / 'data'}\n"
            + (f"  backfill_changes: {backfill_changes}\n" if backfill_changes else "")
            + (f"  history_interval_s: {history_interval_s}\n" if history_interval_s else "")
            + "kafka:\n  session_timeout_s: 6\n  fetch_max_wait_ms: 20\n"
            + (f"features:\n  allowed_lateness_minutes: {history_days * 1440:.0f}\n"
               if history_days is not None else "")
        )
        env = {
            "SEGMENTER_KAFKA_BOOTSTRAP": bootstrap,
            "SEGMENTER_REDIS_URL": redis_url,
            "SEGMENTER_METRICS_PORT": str(free_port()),
            "SEGMENTER_CONFIG": str(overrides),
        }
        yield load_settings(environ=env), env


class WorkerProcess:
    """``segmenter worker`` as a child process that dies with its parent."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.metrics_url = f"http://127.0.0.1:{env['SEGMENTER_METRICS_PORT']}/metrics"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        # Its own session: a terminal's Ctrl-C reaches only us, and we stop the worker in order.
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=kill_with_parent, start_new_session=True,
            )
        return self

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, as an orchestrator does; return the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str) -> float:
        """Sum of a metric's samples (0 while the endpoint is not up yet)."""
        return self.metrics(name)[name]

    def metrics(self, *names: str) -> dict[str, float]:
        """Several metrics' sums from one scrape of only those (a scrape of every metric took
        the worker's GIL for about 9 ms, 6% of a backfill polled five times a second)."""
        totals = dict.fromkeys(names, 0.0)
        query = urllib.parse.urlencode([("name[]", name) for name in names])
        try:
            with urllib.request.urlopen(f"{self.metrics_url}?{query}", timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return totals
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in totals:
                totals[name] += float(line.rsplit(" ", 1)[1])
        return totals

    def progress(self) -> tuple[float, float]:
        """(input messages taken to process, events handled: written out), one scrape."""
        taken, handled, _ = self.progress_settled()
        return taken, handled

    def progress_settled(self) -> tuple[float, float, float]:
        """:meth:`progress` and the users a backfill folded in and has not yet evaluated."""
        got = self.metrics("segmenter_batch_size_sum", "segmenter_events_total",
                           "segmenter_invalid_events_total", "segmenter_unsettled_users")
        return (got["segmenter_batch_size_sum"],
                got["segmenter_events_total"] + got["segmenter_invalid_events_total"],
                got["segmenter_unsettled_users"])

    def handled(self) -> float:
        """Events written out, and none of their users waiting to be evaluated (a backfill
        settles its users once the backlog is read; until then it counts as not handled)."""
        _, handled, unsettled = self.progress_settled()
        return 0.0 if unsettled else handled
