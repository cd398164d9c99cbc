"""``segmenter replay FILE``: bootstrap segments from a shop's exported history.

The file (CSV or JSON Lines, the shop's own column names) is read and every row mapped onto the
input contract and validated (:mod:`streams.tools.traffic.mapping`); valid events are sorted by
event time and produced to the input topic of their kind, keyed by user, in batches, optionally
paced to ``--rate`` events per second. Bad rows are not produced: the first few are reported with
their line and reason, all are counted. With ``--dry-run`` nothing is produced (no broker needed).

Exit codes: 0 done; 1 the broker failed, or rows were read but none is valid; 2 a usage error
(unreadable file, unknown ``--map`` field, column missing from the file), before producing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from features.errors import BadInput
from segmenter.settings import Settings
from streams.runtime.kafka_options import as_options, client_options
from streams.runtime.topics import TopicSetupError, ensure_topics
from streams.tools.admin.group_lag import follow_lag
from streams.tools.traffic.mapping import (
    KIND_FIELDS,
    Loaded,
    MappingError,
    check_columns,
    csv_records,
    jsonl_records,
    load_events,
    parse_map,
)
from streams.tools.traffic.pacing import ProgressCallback, produce_paced

#: File extension -> format, when ``--format`` is not given.
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


class ReplayError(BadInput):
    """The file cannot be replayed as asked; the message says why (exit code 2)."""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay read and produced, for the one-line summary."""

    topic: str
    loaded: Loaded
    produced: int
    elapsed_s: float
    dry_run: bool

    def __str__(self) -> str:
        events = self.loaded.events
        span = (f"{_iso(events[0]['ts'])} .. {_iso(events[-1]['ts'])}" if events else "-")
        done = (f"{len(events):,} valid (dry run: nothing produced)" if self.dry_run
                else f"{self.produced:,} produced to {self.topic}")
        count, unit = ((self.loaded.rows, "rows") if self.dry_run else (self.produced, "events"))
        rate = count / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (f"replay: {self.loaded.rows:,} rows read, {done}, {self.loaded.rejected:,} "
                f"rejected; event time {span}; {self.elapsed_s:.1f} s, {rate:,.0f} {unit}/s")


def add_replay_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``replay`` subcommand to the ``segmenter`` command's subparsers."""
    replay = commands.add_parser(
        "replay", help="produce a shop's exported history (CSV / JSON Lines) to the input topics",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    replay.add_argument("file", metavar="FILE", type=Path, help="CSV or JSON Lines export")
    replay.add_argument("--kind", choices=sorted(KIND_FIELDS), default="order",
                        help="what the rows are (default: order)")
    replay.add_argument("--format", choices=("csv", "jsonl"),
                        help="default: from the extension (.csv, .jsonl, .ndjson, .json)")
    replay.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                        help="take FIELD from COLUMN; repeatable or comma-separated, e.g. "
                        "--map user_id=customer,ts=created_at,total=amount")
    replay.add_argument("--rate", type=_non_negative, default=0.0, metavar="EVENTS_PER_S",
                        help="events per second (default 0: as fast as possible)")
    replay.add_argument("--dry-run", action="store_true",
                        help="validate and report, produce nothing")
    replay.add_argument("--limit", type=_positive_int, metavar="N",
                        help="read only the first N rows")
    replay.add_argument("--no-follow", action="store_true",
                        help="do not wait for the workers to catch up on what was produced")


def run_replay(settings: Settings, args: argparse.Namespace) -> int:
    """Read, validate and (unless ``--dry-run``) produce ``args.file``; return the exit code."""
    started = time.perf_counter()
    topic = settings.kafka.topics.by_kind[args.kind]
    try:
        with _progress_display() as progress:
            loaded = _read(args, progress)
            _report_rejects(loaded)
            produced, caught_up = 0, True
            if not args.dry_run and loaded.events:
                produced = asyncio.run(_produce(settings, topic, loaded, args.rate, progress))
                caught_up = args.no_follow or asyncio.run(_follow(settings, topic, progress))
    except (ReplayError, MappingError) as exc:
        print(f"segmenter replay: error: {exc}", file=sys.stderr)
        return 2
    except TopicSetupError as exc:
        print(f"segmenter replay: {exc}", file=sys.stderr)
        return 1
    print(ReplayResult(topic, loaded, produced, time.perf_counter() - started, args.dry_run))
    if produced and not caught_up:
        print(f"segmenter replay: the workers (consumer group {settings.app_id!r}) stopped "
              f"catching up on {topic}: is a worker running?", file=sys.stderr)
        return 1
    if loaded.rows and not loaded.events:
        print("segmenter replay: no valid row to replay", file=sys.stderr)
        return 1
    return 0


async def replay_events(
    kafka: str | dict[str, Any], topic: str, events: Sequence[dict[str, Any]], rate: float,
    progress: ProgressCallback | None = None,
) -> int:
    """Produce ``events`` in order to ``topic``, keyed by user; return how many were delivered.

    ``rate <= 0``: as fast as possible; else ``rate`` events per second of wall time.
    """
    producer = AIOKafkaProducer(**as_options(kafka), linger_ms=5,
                                max_batch_size=256 * 1024)
    try:
        await producer.start()
        paced = await produce_paced(producer, events, lambda _: topic, rate,
                                    on_progress=progress)
        return paced.sent
    finally:
        await producer.stop()  # flushes what was handed over, also when cancelled



async def _produce(
    settings: Settings, topic: str, loaded: Loaded, rate: float, progress: Progress
) -> int:
    await ensure_topics(settings)
    task = progress.add_task("producing", total=len(loaded.events), detail="")
    started = time.perf_counter()

    def update(sent: int, total: int) -> None:
        speed = sent / max(time.perf_counter() - started, 1e-9)
        progress.update(task, completed=sent, detail=f"{sent:,}/{total:,} events {speed:,.0f}/s")

    return await replay_events(client_options(settings.kafka), topic, loaded.events, rate,
                               update)


async def _follow(settings: Settings, topic: str, progress: Progress) -> bool:
    """Show the workers' lag on ``topic`` falling to zero."""
    task = progress.add_task("workers", total=None, detail="")
    started, first = time.perf_counter(), None

    def update(lag: int) -> None:
        nonlocal first
        first = lag if first is None else first
        done = first - lag
        speed = done / max(time.perf_counter() - started, 1e-9)
        progress.update(task, total=first, completed=done,
                        detail=f"lag {lag:,} events, {speed:,.0f}/s processed")

    return await follow_lag(client_options(settings.kafka), settings.app_id, [topic], update)


def _read(args: argparse.Namespace, progress: Progress) -> Loaded:
    """Map, read and validate the file; ReplayError or MappingError if it cannot be used."""
    path: Path = args.file
    file_format = args.format or FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise ReplayError(f"cannot tell the format of {path} from its extension: "
                          "pass --format csv or --format jsonl")
    mapping = parse_map(args.map, args.kind)
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            task = progress.add_task("reading", total=_size(file), detail="")
            on_row = _row_counter(progress, task, file)
            if file_format == "csv":
                header, records = csv_records(file)
                check_columns(mapping, args.kind, header)
                loaded = load_events(records, args.kind, mapping, args.limit, on_row)
            else:
                loaded = load_events(jsonl_records(file), args.kind, mapping, args.limit, on_row)
                if loaded.rows:
                    check_columns(mapping, args.kind, loaded.columns)
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ReplayError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start} of a "
                          "chunk): re-export it as UTF-8") from None
    return loaded


def _row_counter(progress: Progress, task: TaskID, file: IO[str]) -> Callable[[int], None]:
    """``on_row`` for :func:`load_events`: the bytes read so far and the rows, on the bar."""
    def on_row(rows: int) -> None:
        position = file.buffer.tell()  # type: ignore[attr-defined]
        progress.update(task, completed=position, detail=f"{rows:,} rows")

    return on_row


def _size(file: IO[str]) -> int:
    try:
        return max(Path(file.name).stat().st_size, 1)
    except (OSError, TypeError):
        return 1


def _report_rejects(loaded: Loaded) -> None:
    for rejected in loaded.examples:
        print(f"segmenter replay: rejected {rejected}", file=sys.stderr)
    if loaded.rejected > len(loaded.examples):
        print(f"segmenter replay: ... and {loaded.rejected - len(loaded.examples):,} more "
              "rejected rows", file=sys.stderr)


def _progress_display() -> Progress:
    """Bars on stderr, only on a terminal (piped or captured output gets just the summary)."""
    console = Console(stderr=True)
    return Progress(TextColumn("{task.description:<10}"), BarColumn(), TaskProgressColumn(),
                    TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                    console=console, disable=not console.is_terminal)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value
