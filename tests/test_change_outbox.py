"""The change outbox on the real broker: exits of deleted users (merged visitors, forgotten
users) are parked in the changelog until delivered, so a crash between the user's tombstone and
their exit events still gets the exits out, once the next life recovers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from support import consume_all

from streams.runtime.state.change_outbox import ChangeOutbox, marker_key, parked_key

pytestmark = pytest.mark.integration

CHANGES, CHANGELOG = "segments.changes", "users-changelog"
PARTITIONS = [0, 1, 2, 3]


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(name, len(PARTITIONS), 1)
                               for name in (CHANGES, CHANGELOG)])
    await admin.close()
    client = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await client.start()
    yield client
    await client.stop()


def outbox_over(producer: AIOKafkaProducer, store: dict[bytes, bytes]) -> ChangeOutbox:
    """A worker life's outbox over the table store (which outlives it in the changelog)."""
    return ChangeOutbox(lambda: producer, CHANGES, lambda: CHANGELOG, lambda: store)


def exit_of(user: str, n: int) -> bytes:
    return orjson.dumps({"event_id": f"{user}-exit-{n}", "user_id": user,
                         "segmentation": "four", "previous": "four", "current": None})


async def published(bootstrap: str, count: int) -> list[dict[str, Any]]:
    messages = await consume_all(bootstrap, CHANGES, until=lambda got: len(got) >= count,
                                 timeout=20, settle_ms=500)
    return [orjson.loads(message.value) for message in messages]


async def test_parked_exits_are_sent_then_their_key_deleted(
    kafka_bootstrap: str, producer: AIOKafkaProducer
) -> None:
    store: dict[bytes, bytes] = {}
    outbox = outbox_over(producer, store)
    seq = outbox.next_seq()
    exits = {"gone": [exit_of("gone", 1)]}
    key, value = outbox.park(2, seq, exits)
    store[key] = value
    await outbox.send_after([], exits, seq, lambda user: 2)
    assert [c["event_id"] for c in await published(kafka_bootstrap, 1)] == ["gone-exit-1"]
    assert key not in store and store[marker_key(2)] == b"%d" % seq


async def test_exits_parked_before_a_crash_are_sent_by_the_next_life(
    kafka_bootstrap: str, producer: AIOKafkaProducer
) -> None:
    store: dict[bytes, bytes] = {}
    first_life = outbox_over(producer, store)
    # An earlier write whose exits were delivered and marked, but whose parked key's deletion
    # was lost: not sent again, deleted now.
    old = first_life.next_seq()
    old_key, old_value = first_life.park(1, old, {"old": [exit_of("old", 1)]})
    store[old_key], store[marker_key(1)] = old_value, b"%d" % old
    # The crash: the tombstones and the parked exits are stored, the exits never produced.
    seq = first_life.next_seq()
    for partition, user in ((1, "merged-visitor"), (3, "forgotten")):
        key, value = first_life.park(partition, seq, {user: [exit_of(user, 1),
                                                             exit_of(user, 2)]})
        store[key] = value
    del first_life

    next_life = outbox_over(producer, store)
    next_life.recovered(PARTITIONS)
    parked = [key for key in store if key.startswith(b"\x00outbox-parked:")]
    again = next_life.unparked(parked)
    assert set(again) == {"merged-visitor", "forgotten"}
    await next_life.republish(again, PARTITIONS)
    await next_life.send_after([], {}, next_life.next_seq(), lambda user: 0)  # waits in order
    got = [c["event_id"] for c in await published(kafka_bootstrap, 4)]
    assert sorted(got) == ["forgotten-exit-1", "forgotten-exit-2",
                           "merged-visitor-exit-1", "merged-visitor-exit-2"]
    assert got.index("forgotten-exit-1") < got.index("forgotten-exit-2")
    assert not [key for key in store if key.startswith(b"\x00outbox-parked:")]
    assert parked_key(3, seq) in parked and next_life.seq > seq
