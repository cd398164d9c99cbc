"""The worker's input inbox (event-time alignment, flow control, rebalance) and its health
watchdogs, without I/O."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from streams.runtime.health import STALLED_EXIT_CODE, WorkerHealth
from streams.runtime.inbox import BatchInbox


def messages(tp: str, *timestamps: float, first_offset: int = 0) -> list[SimpleNamespace]:
    return [SimpleNamespace(tp=tp, timestamp=ts, offset=first_offset + n, value=b"{}")
            for n, ts in enumerate(timestamps)]


def inbox_with(assigned: list[str], more: set[str], **kwargs: int) -> BatchInbox:
    inbox = BatchInbox({"clicks", "orders"}, max_messages=kwargs.get("max_messages", 100),
                       align_wait_s=0.05)
    inbox.partitions.assigned = lambda: assigned
    inbox.partitions.has_more = lambda tp, last: tp in more
    return inbox


async def test_messages_leave_in_event_time_order_across_partitions() -> None:
    inbox = inbox_with(["clicks/0", "orders/0"], more=set())
    await inbox.put(messages("clicks/0", 10, 20, 30))
    await inbox.put(messages("orders/0", 5, 25))
    assert [m.timestamp for m in await inbox.take(100)] == [5, 10, 20, 25, 30]


async def test_a_partition_with_input_on_the_broker_holds_later_messages_back() -> None:
    # orders/0 is empty here but the broker has more after its last message (ts 12): clicks
    # later than 12 wait for it, for at most align_wait_s.
    inbox = inbox_with(["clicks/0", "orders/0"], more={"orders/0"})
    await inbox.put(messages("orders/0", 12))
    await inbox.put(messages("clicks/0", 10, 20, 30))
    assert [m.timestamp for m in await inbox.take(100)] == [10, 12]

    async def orders_arrive() -> None:
        await asyncio.sleep(0.01)
        await inbox.put(messages("orders/0", 15, 40, first_offset=1))

    arrival = asyncio.create_task(orders_arrive())
    taken = await inbox.take(100)
    await arrival
    assert [m.timestamp for m in taken] == [15, 20, 30, 40]

    # orders/0 is empty again with more on the broker: a later click waits align_wait_s for
    # it, then leaves anyway.
    await inbox.put(messages("clicks/0", 50, first_offset=3))
    assert [m.timestamp for m in await inbox.take(100)] == [50]


async def test_a_partition_running_ahead_is_paused_until_it_drains() -> None:
    paused: list[str] = []
    inbox = inbox_with(["clicks/0"], more=set(), max_messages=8)
    inbox.partitions.pause = paused.append
    inbox.partitions.resume = paused.remove
    await inbox.put(messages("clicks/0", *range(5)))
    assert paused == ["clicks/0"]  # half the inbox is one partition's cap
    await inbox.take(3)
    assert paused == ["clicks/0"]  # 2 left: not yet under half the cap
    await inbox.take(1)
    assert paused == []


async def test_a_full_inbox_makes_the_consumer_wait() -> None:
    inbox = inbox_with(["clicks/0"], more=set(), max_messages=2)
    await inbox.put(messages("clicks/0", 1, 2))
    blocked = asyncio.create_task(inbox.put(messages("clicks/0", 3, first_offset=2)))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    await inbox.take(1)
    await asyncio.wait_for(blocked, 1)
    assert len(inbox) == 2


async def test_a_batch_is_cut_by_bytes_and_clear_hands_back_what_waits() -> None:
    dropped: list[int] = []
    inbox = inbox_with(["clicks/0"], more=set())
    inbox.on_drop = lambda message: dropped.append(message.offset)
    await inbox.put(messages("clicks/0", 1, 2, 3, 4))
    assert len(await inbox.take(100, max_bytes=3)) == 2  # b"{}" each: stops past 3 bytes
    assert inbox.clear() == {"clicks/0": 2}  # each partition's first offset dropped
    assert dropped == [2, 3] and len(inbox) == 0
    assert await inbox.take(100, timeout=0.01) == []


async def test_what_recovery_fetched_before_resuming_the_flow_is_read_again() -> None:
    # Faust's recovery seeks to the committed offsets with the partitions already fetching,
    # then resumes the flow, which clears the inbox: those messages are past Faust's read
    # offsets and were never fetched again. A revocation's clear (flow suspended) reads
    # nothing again: the partitions' next owner does.
    from streams.runtime.app import _InboxFlow

    sought: list[dict[str, int]] = []

    async def seek_wait(partitions: dict[str, int]) -> None:
        sought.append(dict(partitions))

    active = [False]
    consumer = SimpleNamespace(assignment=lambda: {"orders/0", "orders/3"}, seek_wait=seek_wait,
                               _committed_offset={"orders/0": 7, "orders/3": 9})
    app = SimpleNamespace(consumer=consumer, flow_control=SimpleNamespace(
        is_active=lambda: active[0]))
    inbox = inbox_with(["orders/0", "orders/3"], more=set())
    flow = _InboxFlow(inbox, app)  # type: ignore[arg-type]
    await inbox.put(messages("orders/0", 1, 2, first_offset=7))
    flow.clear()  # revoked
    assert len(inbox) == 0 and flow.seeking is None
    active[0] = True
    await inbox.put(messages("orders/0", 1, 2, first_offset=7) + messages("orders/3", 1,
                                                                          first_offset=4)
                    + messages("orders/9", 1, first_offset=5))  # no longer assigned
    flow.clear()  # recovery resumes the flow
    await flow.seeking
    # Never before the committed offset: a fetch from before recovery's seek may be older.
    assert len(inbox) == 0 and sought == [{"orders/0": 7, "orders/3": 9}]


async def test_a_stalled_worker_exits_and_a_progressing_one_does_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exits: list[int] = []
    stalled = WorkerHealth(stall_timeout_s=0.2)
    stalled.recovered()
    stuck = asyncio.create_task(asyncio.Event().wait(), name="stuck-consumer")
    with caplog.at_level(logging.ERROR, logger="streams.runtime.health"):
        await asyncio.wait_for(stalled.watch_progress(lambda: [("clicks/0", 5)], lambda: False,
                                                      exits.append), 2)
    stuck.cancel()
    assert exits == [STALLED_EXIT_CODE] and not stalled.live
    # The log names where each task waits, the stuck one included.
    assert "stuck-consumer: wait (locks.py" in caplog.text and "clicks/0: 5" in caplog.text

    busy = WorkerHealth(stall_timeout_s=0.2)
    busy.recovered()
    stop = asyncio.Event()

    async def progress() -> None:
        for _ in range(12):
            busy.progressed()
            await asyncio.sleep(0.05)
        stop.set()

    worker = asyncio.create_task(progress())
    await busy.watch_progress(lambda: [("clicks/0", 5)], stop.is_set, exits.append)
    await worker
    assert exits == [STALLED_EXIT_CODE] and busy.live  # no second exit


async def test_the_loop_lag_is_measured() -> None:
    health = WorkerHealth(stall_timeout_s=60)
    stop = asyncio.Event()
    watcher = asyncio.create_task(health.watch_loop(stop.is_set))
    await asyncio.sleep(0.06)
    import time

    time.sleep(0.2)  # hold the loop
    await asyncio.sleep(0.06)
    stop.set()
    await watcher
    assert 0.1 < health.max_loop_lag < 1.0


def test_no_highwater_is_asked_of_a_partition_no_longer_assigned() -> None:
    # aiokafka asserts that a partition is assigned before it reports its highwater; a review
    # tick during a rebalance asked about a revoked one and crashed the worker.
    from streams.runtime.app import SegmenterApp

    def highwater(tp: tuple[str, int]) -> int:
        assert tp in assigned, "Partition is not assigned"
        return 10

    assigned = {("shop.orders", 0)}
    app = SimpleNamespace(consumer=SimpleNamespace(
        assignment=lambda: assigned, highwater=highwater, _committed_offset={}))
    assert SegmenterApp._has_more(app, ("shop.orders", 0), 3) is True  # type: ignore[arg-type]
    assert SegmenterApp._has_more(app, ("shop.orders", 1), 3) is False  # type: ignore[arg-type]


async def test_a_fetch_turn_survives_partitions_resumed_while_it_waits() -> None:
    # The worker's thread pauses and resumes partitions (Faust's active set) while the
    # consumer thread is between two per-partition reads of one fetch turn.
    import contextlib

    from streams.runtime.app import PARTITION_RECORDS, _ConsumerThread

    active = {("t", 0), ("t", 1), ("t", 2)}
    asked: list[int] = []

    async def fetched_records(partitions: set, timeout: float = 0, max_records: int = 0,
                              ) -> dict:
        assert max_records == PARTITION_RECORDS
        asked.append(len(partitions))
        active.add(("t", 3 + len(asked)))  # another partition resumed meanwhile
        await asyncio.sleep(0)
        return {}

    fetcher = SimpleNamespace(_closed=False, fetched_records=fetched_records,
                              _subscriptions=SimpleNamespace(
                                  fetch_context=contextlib.nullcontext))
    thread = SimpleNamespace(consumer=SimpleNamespace(flow_active=True))
    consumer = SimpleNamespace(_closed=False, _fetcher=fetcher)
    records = await _ConsumerThread._fetch_records(  # type: ignore[arg-type]
        thread, consumer, active, timeout=0.1)
    assert records == {} and asked == [3, 1, 1, 1]


async def test_a_stall_first_reads_the_input_again_then_exits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exits: list[int] = []
    rereads: list[float] = []
    health = WorkerHealth(stall_timeout_s=0.6)
    health.recovered()

    async def reread() -> None:
        rereads.append(health.progressed_at)

    def broken() -> str:
        raise AttributeError("no consumer")

    with caplog.at_level(logging.WARNING):
        await asyncio.wait_for(health.watch_progress(
            lambda: [("clicks/0", 5)], lambda: False, exits.append, reread=reread,
            describe=lambda: "flow_active=False"), 3)
        assert len(rereads) == 1 and exits == [STALLED_EXIT_CODE]
        assert [("flow_active=False" in r.getMessage()) for r in caplog.records] == [True, True]
        caplog.clear()
        # A consumer that cannot be described does not keep a stalled worker from exiting.
        await asyncio.wait_for(health.watch_progress(
            lambda: [("clicks/0", 5)], lambda: False, exits.append, describe=broken), 3)
    assert exits == [STALLED_EXIT_CODE] * 2
    assert "cannot be described: AttributeError('no consumer')" in caplog.text
