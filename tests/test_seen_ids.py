"""The ids kept to drop duplicates: stored compactly, read back exactly, older records too."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from features.seen_ids import SeenIds, id_hash

ids = st.dictionaries(st.text(min_size=1, max_size=64),
                      st.floats(0, 4e9, allow_nan=False), max_size=200)


@given(ids)
def test_a_stored_set_reads_back_with_the_same_members_and_times(seen_at: dict) -> None:
    seen = SeenIds()
    for event_id, ts in seen_at.items():
        seen.add(event_id, ts)
    again = SeenIds.from_state(seen.to_state())
    assert again.times == seen.times and all(event_id in again for event_id in seen_at)


def test_a_record_stored_with_plain_ids_is_read_as_hashes() -> None:
    legacy = {"evt-1": 100.2, "evt-2": 250.0}
    seen = SeenIds.from_state(legacy)
    assert "evt-1" in seen and "evt-2" in seen and "evt-3" not in seen
    seen.prune(horizon=200.0, at_least=0)
    assert "evt-1" not in seen and "evt-2" in seen


def test_an_id_is_kept_until_its_second_has_passed() -> None:
    seen = SeenIds()
    seen.add("e", 100.4)  # rounded up to 101: never forgotten before it could be late
    seen.prune(horizon=100.9, at_least=0)
    assert "e" in seen


def test_pruning_waits_until_the_ids_have_doubled() -> None:
    seen = SeenIds()
    for n in range(40):
        seen.add(f"e{n}", float(n))
        seen.prune(horizon=n - 10.0)
    # Pruned when over 16 (to 11 left), then only past 22 ids again: never over twice.
    assert 11 <= len(seen) <= 22 and "e39" in seen and "e0" not in seen


@given(ids)
def test_packed_ids_answer_as_a_dict_would(seen_at: dict) -> None:
    """Against the plain {hash: second} they replace, through adds, a merge and pruning."""
    seen, plain = SeenIds(), {}
    for event_id, ts in seen_at.items():
        seen.add(event_id, ts)
        plain[id_hash(event_id)] = math.ceil(ts)
    other = SeenIds()
    other.add("from-the-visitor", 7.0)
    seen.update(other)
    plain[id_hash("from-the-visitor")] = 7
    assert seen.times == plain and len(seen) == len(plain)
    seen.prune(horizon=2e9, at_least=0)
    assert seen.times == {key: second for key, second in plain.items() if second >= 2e9}
    assert all((event_id in seen) == (math.ceil(ts) >= 2e9) for event_id, ts in seen_at.items())

