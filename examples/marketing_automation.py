"""Marketing automation: send a campaign when a user enters a chosen segment.

An example subscriber of the topic ``segments.changes`` (see docs/outputs.md, "Change events").
It relies only on the documented message format, so it can be copied out of this repository:

- each message is one JSON change: ``event_id``, ``type`` (``enter``, ``leave`` or ``move``),
  ``user_id``, ``segmentation``, ``previous``, ``current``, ``ts``, ``backfill``, ...;
- delivery is at least once, and a re-sent change keeps its ``event_id``: drop ids already
  seen (a bounded set of recent ids is enough, since re-sent changes follow a worker's
  restart at once);
- changes flagged ``"backfill": true`` describe moments long past (the worker was catching
  up on history): campaigns skip them unless ``--include-backfill`` is given.

A user *enters* a segment on an ``enter`` or a ``move`` whose ``current`` is that segment. For
each such change the program "sends" the campaign by printing one JSON line on stdout, then
commits the offsets of the messages it has handled (so a restart goes on from there).

    python examples/marketing_automation.py --bootstrap 127.0.0.1:9092 \\
        --segment vip --segment rfm:at_risk --segment cart_abandoners

Needs only aiokafka and orjson.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError

#: A segment to trigger on: (segmentation or None for any, segment name).
Trigger = tuple[str | None, str]


class SeenIds:
    """The most recent ``capacity`` change ids, oldest forgotten first (an LRU set).

    >>> seen = SeenIds(capacity=2)
    >>> seen.add("a"), seen.add("b"), seen.add("a"), seen.add("c"), seen.add("b")
    (True, True, False, True, True)
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event_id: str) -> bool:
        """Remember ``event_id``; False if it was already among the recent ids."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True


def parse_trigger(text: str) -> Trigger:
    """``"rfm:at_risk"`` -> ("rfm", "at_risk"); ``"vip"`` -> (None, "vip"): any segmentation.

    >>> parse_trigger("lifecycle:repeat"), parse_trigger("vip")
    (('lifecycle', 'repeat'), (None, 'vip'))
    """
    segmentation, _, segment = text.rpartition(":")
    if not segment:
        raise argparse.ArgumentTypeError(f"no segment name in {text!r}")
    return segmentation or None, segment


def entered(change: dict[str, Any], triggers: list[Trigger]) -> Trigger | None:
    """The trigger whose segment the change puts its user into, if any."""
    if change.get("type") not in ("enter", "move") or change.get("current") is None:
        return None
    for segmentation, segment in triggers:
        if change["current"] == segment and segmentation in (None, change.get("segmentation")):
            return segmentation, segment
    return None


def campaign(change: dict[str, Any], trigger: Trigger) -> dict[str, Any]:
    """What is sent, named after the trigger; the change id doubles as the idempotency key for
    the mail provider (a campaign sent just before a crash, whose offset was not committed yet,
    comes round again with the same id)."""
    segmentation, segment = trigger
    return {"action": "send_campaign",
            "campaign": f"{segmentation}:{segment}" if segmentation else segment,
            "user_id": change["user_id"], "segmentation": change["segmentation"],
            "segment": change["current"], "change_id": change["event_id"], "ts": change["ts"]}


@dataclass
class Counts:
    read: int = 0
    duplicates: int = 0
    invalid: int = 0
    skipped_backfill: int = 0
    campaigns: int = 0


@dataclass
class Automation:
    """Reads changes, acts on entries, keeps the counts; one instance per consumer."""

    triggers: list[Trigger]
    include_backfill: bool
    seen: SeenIds
    counts: Counts = field(default_factory=Counts)

    def handle(self, record: ConsumerRecord) -> None:
        self.counts.read += 1
        try:
            change = orjson.loads(record.value)
            is_new = self.seen.add(change["event_id"])
        except (orjson.JSONDecodeError, TypeError, KeyError):
            # Not a change event: nothing to act on, and no reason to stop the consumer.
            self.counts.invalid += 1
            print(f"skipping a message that is not a change event at {record.topic}/"
                  f"{record.partition}@{record.offset}", file=sys.stderr)
            return
        if not is_new:
            self.counts.duplicates += 1
            return
        trigger = entered(change, self.triggers)
        if trigger is None:
            return
        if change.get("backfill") and not self.include_backfill:
            self.counts.skipped_backfill += 1
        else:
            self.counts.campaigns += 1
            print(orjson.dumps(campaign(change, trigger)).decode(), flush=True)


def left_to_read(max_events: int | None, counts: Counts) -> int | None:
    """How many more messages to read before stopping (None: no limit)."""
    return None if max_events is None else max(0, max_events - counts.read)


async def consume(args: argparse.Namespace, automation: Automation, stop: asyncio.Event) -> None:
    """Act on each batch of changes, then commit exactly the offsets acted on."""
    consumer = AIOKafkaConsumer(
        args.topic, bootstrap_servers=args.bootstrap, group_id=args.group,
        enable_auto_commit=False, auto_offset_reset=args.start,
    )
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        while not stop.is_set():
            remaining = left_to_read(args.max_events, automation.counts)
            if remaining == 0:
                break
            batches = await consumer.getmany(timeout_ms=200, max_records=remaining)
            handled: dict[TopicPartition, int] = {}
            for partition, records in batches.items():
                for record in records:
                    automation.handle(record)
                    handled[partition] = record.offset + 1
            if handled:
                await commit(consumer, handled)
                idle_since = loop.time()
            elif args.timeout is not None and loop.time() - idle_since >= args.timeout:
                break
    finally:
        await stop_consumer(consumer)


async def commit(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
    try:
        await consumer.commit(offsets)
    except CommitFailedError:
        # A rebalance gave these partitions to another member of the group (more copies of
        # this program running): it reads the uncommitted changes again and may act on them
        # again, which is what the change id as idempotency key is for.
        print("commit refused after a rebalance; the new owner goes on", file=sys.stderr)


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop, even with the broker gone: aiokafka's stop then lets its fetch task's CancelledError
    out (aio-libs/aiokafka#647). Only a cancellation of this task itself goes on up."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise
        print("the consumer stopped without the broker", file=sys.stderr)


async def run(args: argparse.Namespace) -> Counts:
    automation = Automation(args.segment, args.include_backfill, SeenIds(args.remember))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await consume(args, automation, stop)
    return automation.counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("SEGMENTER_KAFKA_BOOTSTRAP",
                                                              "127.0.0.1:9092"),
                        help="Kafka bootstrap servers (default: $SEGMENTER_KAFKA_BOOTSTRAP)")
    parser.add_argument("--topic", default="segments.changes")
    parser.add_argument("--group", default="marketing-automation",
                        help="consumer group: its committed offsets say where to go on from")
    parser.add_argument("--segment", "--segments", action="append", type=parse_trigger,
                        required=True, metavar="[SEGMENTATION:]SEGMENT",
                        help="trigger on entering this segment (repeatable), e.g. vip, "
                             "rfm:at_risk, lifecycle:repeat")
    parser.add_argument("--start", choices=["earliest", "latest"], default="earliest",
                        help="where a group without committed offsets starts")
    parser.add_argument("--include-backfill", action="store_true",
                        help="also act on changes flagged backfill (history being caught up)")
    parser.add_argument("--remember", type=int, default=100_000,
                        help="how many recent change ids to remember for deduplication")
    parser.add_argument("--max-events", type=int, default=None,
                        help="stop after reading this many messages (for tests)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="stop after this many seconds without a message (for tests)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = asyncio.run(run(args))
    # The summary goes to stderr, so stdout holds nothing but the actions.
    print(orjson.dumps({"summary": asdict(counts)}).decode(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
