"""A stored user record and its outbox: the change events travel after the record's LZ4 block,
so that once delivered the worker keeps the record without them; records written by earlier
versions (the outbox inside the JSON) still read back whole."""

from __future__ import annotations

import lz4.block
import orjson

from features.profile import FeatureParams, UserFeatures
from segmenter.records import LZ4_MARK, OUTBOX_MARK, UserRecord, outbox_of, without_outbox
from streams.runtime.state.change_outbox import keep_delivered
from streams.runtime.state.parsed_records import ParsedRecords

PARAMS = FeatureParams()
CHANGES = ['{"event_id":"e1","type":"enter","current":"visitor","cause":"line\\nbreak"}',
           '{"event_id":"e2","type":"move","previous":"visitor","current":"customer"}']


def record_with_outbox() -> UserRecord:
    return UserRecord(UserFeatures(PARAMS), segments={"lifecycle": "customer"},
                      outbox=list(CHANGES), outbox_seq=12)


def test_the_outbox_travels_after_the_block_and_reads_back_byte_for_byte() -> None:
    stored = record_with_outbox().to_bytes()
    assert stored[:1] == OUTBOX_MARK
    assert outbox_of(stored) == (12, CHANGES)
    again = UserRecord.from_bytes(stored, PARAMS)
    assert (again.outbox, again.outbox_seq, again.segments) == (CHANGES, 12,
                                                                {"lifecycle": "customer"})
    assert again.to_bytes() == stored


def test_a_record_kept_without_its_delivered_outbox_is_the_same_record_and_smaller() -> None:
    stored = record_with_outbox().to_bytes()
    kept = without_outbox(stored)
    assert kept[:1] == LZ4_MARK and len(kept) < len(stored) - sum(map(len, CHANGES))
    again = UserRecord.from_bytes(kept, PARAMS)
    assert (again.outbox, again.outbox_seq) == ([], 0)
    assert again.segments == {"lifecycle": "customer"}
    assert without_outbox(kept) is kept  # nothing more to leave out


def test_a_record_written_by_an_earlier_version_keeps_its_outbox() -> None:
    state = orjson.loads(lz4.block.decompress(
        without_outbox(record_with_outbox().to_bytes())[1:]))
    state.update(outbox=CHANGES, outbox_seq=9)
    old = LZ4_MARK + lz4.block.compress(orjson.dumps(state))
    again = UserRecord.from_bytes(old, PARAMS)
    assert (again.outbox, again.outbox_seq) == (CHANGES, 9)


def test_only_delivered_writes_lose_their_outbox_and_parsed_records_follow() -> None:
    first, second = record_with_outbox(), record_with_outbox()
    second.outbox_seq = 13
    store = {b"u1": first.to_bytes(), b"u2": second.to_bytes()}
    before = dict(store)
    parsed: ParsedRecords[UserRecord] = ParsedRecords(8)
    parsed.keep(b"u1", store[b"u1"], first)
    keep_delivered(store, [(b"u1", 0), (b"u2", 0), (b"gone", 0)], {0: 12}, parsed)
    assert outbox_of(store[b"u1"]) == (0, []) and store[b"u2"] is before[b"u2"]
    assert b"gone" not in store
    assert parsed.take(b"u1", store[b"u1"]) is first  # the same record, under its new bytes
