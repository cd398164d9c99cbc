"""``segmenter demo``: broker, Redis, a worker and simulated shop traffic, with a live view.

Segment sizes, the latest segment changes and the event rate refresh in the terminal while the
simulator plays back ``--days`` of shop history. ``--duration`` (or Ctrl-C) ends it: the worker
drains what was sent, a summary is printed, and every child process is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from segmenter.settings import Settings
from streams.runtime.topics import ensure_topics
from streams.tools.admin.reader import MembershipReader
from streams.tools.local.services import WorkerProcess, local_services
from streams.tools.traffic.simulator import simulate


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    console = Console()
    # The explorer's size plots get a sample every 5 s, so that a two-minute demo draws lines.
    with local_services(settings, "segmenter-demo", args.days,
                        history_interval_s=5) as (settings, env), \
            tempfile.TemporaryDirectory(prefix="segmenter-demo-") as tmp:
        console.print(f"Kafka at {settings.kafka.bootstrap}, Redis at {settings.redis.url}, "
                      f"metrics at http://127.0.0.1:{settings.metrics.port}/metrics")
        asyncio.run(ensure_topics(settings))
        with WorkerProcess(env, Path(tmp) / "worker.log") as worker:
            personas = args.personas_out or Path(tmp) / "personas.jsonl"
            demo = Demo(settings, worker, args, personas, console)
            try:
                asyncio.run(with_explorer(demo.run(), settings, args, console))
            except KeyboardInterrupt:
                console.print("\n[yellow]interrupted: stopping the worker and the services[/]")
                return 130
    return 0


async def with_explorer(work: Coroutine[Any, Any, None], settings: Settings,
                        args: argparse.Namespace, console: Console) -> None:
    """Run ``work`` with the segment explorer served beside it; then, on a terminal, keep
    the explorer (and the services) up until Ctrl-C so that the result can be explored."""
    from streams.tools.explorer.app import server

    explorer = server(settings, args.host, args.port)
    serving = asyncio.create_task(explorer.serve())
    console.print(f"segment explorer at [bold]http://{args.host}:{args.port}/[/]")
    try:
        await work
        if sys.stdin.isatty() and not serving.done():
            console.print(f"explorer still at http://{args.host}:{args.port}/: Ctrl-C stops "
                          "it, the worker and the services")
            await serving
    finally:
        explorer.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, SystemExit):
            await serving


class Demo:
    """The live view and the summary; the simulator and the worker do the work."""

    def __init__(self, settings: Settings, worker: WorkerProcess, args: argparse.Namespace,
                 personas_path: Path, console: Console) -> None:
        self.settings = settings
        self.worker = worker
        self.args = args
        self.personas_path = personas_path
        self.console = console
        self.reader = MembershipReader(settings.redis.url, settings.redis.key_prefix)
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=10)
        self.changes_seen = 0
        self.rates: collections.deque[tuple[float, float]] = collections.deque(maxlen=20)

    async def run(self) -> None:
        follower = asyncio.create_task(self._follow_changes())
        started = time.monotonic()
        simulation = asyncio.create_task(simulate(
            self.settings.kafka.bootstrap, self.settings.kafka.topics, users=self.args.users,
            rate=self.args.rate, duration=self.args.duration, seed=self.args.seed,
            days=self.args.days, personas_out=self.personas_path, shift=self.args.shift,
        ))
        try:
            with Live(console=self.console, refresh_per_second=4) as live:
                while not simulation.done():
                    live.update(await self._view(time.monotonic() - started))
                    await asyncio.sleep(0.5)
                result = simulation.result()
                drained = await self._drain(result.sent, live, started)
                live.update(await self._view(time.monotonic() - started))
            await self._summary(result, drained, time.monotonic() - started)
        finally:
            simulation.cancel()
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            await self.reader.close()

    async def _drain(self, sent: int, live: Live, started: float) -> float:
        deadline = time.monotonic() + 60
        handled = await asyncio.to_thread(self.worker.handled)
        while handled < sent and time.monotonic() < deadline:
            live.update(await self._view(time.monotonic() - started))
            await asyncio.sleep(0.5)
            handled = await asyncio.to_thread(self.worker.handled)
        return handled

    async def _follow_changes(self) -> None:
        consumer = AIOKafkaConsumer(
            self.settings.kafka.topics.changes, bootstrap_servers=self.settings.kafka.bootstrap,
            auto_offset_reset="earliest", enable_auto_commit=False,
        )
        await consumer.start()
        try:
            async for message in consumer:
                self.changes_seen += 1
                self.recent.appendleft(orjson.loads(message.value))
        finally:
            await consumer.stop()

    async def _view(self, elapsed: float) -> Group:
        handled = await asyncio.to_thread(self.worker.handled)
        self.rates.append((time.monotonic(), handled))
        (t0, n0), (t1, n1) = self.rates[0], self.rates[-1]
        rate = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
        header = (f"[bold]segmenter demo[/]  {elapsed:5.0f}s / {self.args.duration:.0f}s   "
                  f"events handled {handled:,.0f}   {rate:,.0f} events/s   "
                  f"segment changes {self.changes_seen:,}")
        return Group(header, _sizes_table(await self.reader.segments()),
                     _changes_table(list(self.recent)))

    async def _summary(self, result: Any, drained: float, elapsed: float) -> None:
        dead = await asyncio.to_thread(self.worker.metric, "segmenter_invalid_events_total")
        self.console.print(Panel(
            f"events sent {result.sent:,}, handled by the worker {drained:,.0f} "
            f"(dead letters {dead:,.0f}), segment changes {self.changes_seen:,}, "
            f"{elapsed:.0f} s", title="summary"))
        self.console.print(await self._persona_table())

    async def _persona_table(self) -> Table:
        """Planted persona -> the segments its users ended up in (most common first)."""
        table = Table(title="planted personas -> segments (top 2 per segmentation)")
        for column in ("persona", "users", "lifecycle", "rfm", "behavior"):
            table.add_column(column)
        names = {segment: f"{segment} ({profile.get('name', '')})" for segment, profile in
                 (await self.reader.segments()).get("behavior", {}).items()}
        by_persona: dict[str, list[str]] = collections.defaultdict(list)
        for line in self.personas_path.read_bytes().splitlines():
            row = orjson.loads(line)
            by_persona[row["persona"]].append(row["entity_id"])
        for persona, users in sorted(by_persona.items()):
            found = [await self.reader.user(user) for user in users]
            table.add_row(persona, str(len(users)), _top(found, "lifecycle"), _top(found, "rfm"),
                          _top(found, "behavior", names))
        return table


def _top(memberships: list[dict[str, str]], segmentation: str,
         names: dict[str, str] | None = None) -> str:
    counts = collections.Counter(m.get(segmentation, "-") for m in memberships)
    total = max(1, len(memberships))
    return ", ".join(f"{(names or {}).get(name, name)} {100 * n / total:.0f}%"
                     for name, n in counts.most_common(2))


def _sizes_table(catalogue: dict[str, dict[str, dict[str, Any]]]) -> Table:
    table = Table(title="segment sizes", expand=True)
    table.add_column("segmentation")
    table.add_column("segment")
    table.add_column("users", justify="right")
    table.add_column("share", justify="right")
    for segmentation, profiles in catalogue.items():
        total = sum(p.get("size", 0) for p in profiles.values()) or 1
        for name, profile in sorted(profiles.items(), key=lambda kv: -kv[1].get("size", 0)):
            size = profile.get("size", 0)
            bar = "█" * round(20 * size / total)
            label = f"{name}: {profile['name']}" if "name" in profile else name
            table.add_row(segmentation, label, f"{size:,}", f"{100 * size / total:4.1f}% {bar}")
        segmentation = ""
    return table


def _changes_table(changes: list[dict[str, Any]]) -> Table:
    table = Table(title="latest segment changes", expand=True)
    for column in ("event time", "user", "segmentation", "change"):
        table.add_column(column)
    for change in changes:
        table.add_row(change["ts"][:19], change["user_id"], change["segmentation"],
                      f"{change['previous'] or '-'} -> {change['current'] or '-'}")
    return table
