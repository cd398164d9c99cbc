"""Identity stitching: a visitor who logs in brings their history into the customer's record."""

from __future__ import annotations

import orjson
from support import TOPIC

from features.events import EVENT_TYPES
from features.profile import FeatureParams, UserFeatures
from segmenter.engine import SegmentEngine, UserRecord
from segmenter.records import VISITOR_IDS_KEPT
from segmenter.settings import load_settings
from streams.runtime.batch import BatchProcessor
from streams.runtime.messages import Message

T0 = 1_767_225_600.0
SETTINGS = load_settings(environ={})


def message(offset: int, event: dict) -> Message:
    key = (event.get("user_id") or event["anonymous_id"]).encode()
    return Message(TOPIC[event.pop("kind")], 0, offset, key, orjson.dumps(event), T0)


def visit(n: int, ts: float, **who: str) -> dict:
    return {"kind": "click", "event_id": f"c{n}", "ts": ts, "page": "/p/1",
            "product_id": "p1", "category": "shoes", **who}


def test_merged_features_equal_one_history() -> None:
    events = [visit(1, T0, anonymous_id="a1"), visit(2, T0 + 60, anonymous_id="a1"),
              visit(3, T0 + 7200, user_id="u1"),
              {"kind": "order", "event_id": "o1", "ts": T0 + 7300, "user_id": "u1",
               "order_id": "1", "total": 42.5}]
    parsed = [EVENT_TYPES[e["kind"]].model_validate(e) for e in events]
    visitor, customer, together = (UserFeatures(FeatureParams()) for _ in range(3))
    for event in parsed:
        (visitor if event.user_id is None else customer).learn_one(event)
        together.learn_one(event)
    customer.merge(visitor)
    now = T0 + 86_400
    assert customer.snapshot(now) == together.snapshot(now)


def test_a_login_moves_the_visitor_into_the_customer() -> None:
    engine = SegmentEngine(SETTINGS)
    processor = BatchProcessor(engine, SETTINGS.kafka.topics, 3600)
    store: dict[str, bytes] = {}

    def load(user_id: str) -> UserRecord | None:
        return engine.load_record(store[user_id]) if user_id in store else None

    def run(events: list[dict], first_offset: int) -> object:
        outcome = processor.process(
            [message(first_offset + n, e) for n, e in enumerate(events)], load)
        for user_id, record in outcome.records.items():
            if user_id in outcome.deleted:
                store.pop(user_id, None)
            else:
                store[user_id] = record.to_bytes()
        return outcome

    run([visit(1, T0, anonymous_id="a1"), visit(2, T0 + 60, anonymous_id="a1")], 0)
    assert engine.load_record(store["a1"]).segments == {"lifecycle": "visitor"}

    login = visit(3, T0 + 120, user_id="u1", anonymous_id="a1")
    outcome = run([login, visit(4, T0 + 130, anonymous_id="a1")], 2)
    assert outcome.deleted == {"a1"} and "a1" not in store
    left = [c for c in outcome.changes if c.user_id == "a1"]
    assert [(c.segmentation, c.previous, c.current, c.merged_into, c.cause) for c in left] == [
        ("lifecycle", "visitor", None, "u1", "merge:c3")]
    assert orjson.loads(left[0].to_json(T0))["merged_into"] == "u1"
    customer = engine.load_record(store["u1"])
    assert customer.features.snapshot(T0 + 200)["page_views"] == 4  # 3 as a1, then the login
    assert customer.segments == {"lifecycle": "visitor"}  # no order yet: still a visitor

    # Browsing anonymously again later starts a fresh visitor until the next login.
    run([visit(5, T0 + 300, anonymous_id="a1")], 4)
    assert engine.load_record(store["a1"]).features.snapshot(T0 + 400)["page_views"] == 1


class Worker:
    """A processor and its store; it owns the users ``owned`` names."""

    def __init__(self, owned: set[str]) -> None:
        self.engine = SegmentEngine(SETTINGS)
        self.processor = BatchProcessor(self.engine, SETTINGS.kafka.topics, 3600)
        self.store: dict[str, UserRecord] = {}
        self.owned = owned

    def run(self, messages: list[Message]) -> list[Message]:
        """Process; return the identity handoffs it sends, as messages."""
        outcome = self.processor.process(messages, self.store.get, self.owned.__contains__)
        for user_id, record in outcome.records.items():
            if user_id in outcome.deleted:
                self.store.pop(user_id, None)
            else:
                self.store[user_id] = record
        self.changes = outcome.changes
        return [Message(SETTINGS.kafka.topics.identity, 0, 0, key.encode(), value, T0)
                for key, value in outcome.handoffs]


def test_a_visitor_on_another_worker_is_handed_over_once() -> None:
    visits = [visit(1, T0, anonymous_id="a1"), visit(2, T0 + 60, anonymous_id="a1")]
    login = visit(3, T0 + 120, user_id="u1", anonymous_id="a1")
    alone = Worker({"a1", "u1"})
    alone.run([message(n, dict(e)) for n, e in enumerate([*visits, login])])

    customers, visitors = Worker({"u1"}), Worker({"a1"})
    assert visitors.run([message(n, dict(e)) for n, e in enumerate(visits)]) == []
    claims = customers.run([message(2, dict(login))])
    assert [orjson.loads(c.value)["type"] for c in claims] == ["claim"] and claims[0].key == b"a1"
    transfers = visitors.run(claims)
    assert "a1" not in visitors.store
    assert [(c.user_id, c.current, c.merged_into) for c in visitors.changes] == [
        ("a1", None, "u1")]
    assert customers.run(transfers) == []
    now = T0 + 200
    assert (customers.store["u1"].features.snapshot(now)
            == alone.store["u1"].features.snapshot(now))
    # Redelivered after a crash: the claim finds no visitor, the transfer is not counted twice.
    assert visitors.run(claims) == []
    customers.run(transfers)
    assert customers.store["u1"].features.snapshot(now)["page_views"] == 3
    # Later logins of the same pair send no new claim.
    assert customers.run([message(9, visit(9, T0 + 300, user_id="u1", anonymous_id="a1"))]) == []


def test_a_customer_of_many_devices_remembers_the_latest_visitor_ids_only() -> None:
    # One visitor id per device or cleared cookie: over years the lists grew with history.
    customers, visitors = Worker({"u1"}), Worker({f"a{n}" for n in range(100)})
    recent = None
    for n in range(100):
        visitors.run([message(2 * n, visit(2 * n, T0 + n * 3600, anonymous_id=f"a{n}"))])
        claims = customers.run([message(2 * n + 1, visit(2 * n + 1, T0 + n * 3600 + 60,
                                                         user_id="u1", anonymous_id=f"a{n}"))])
        transfers = visitors.run(claims)
        assert len(transfers) == 1
        customers.run(transfers)
        recent = transfers
    record = customers.store["u1"]
    assert record.absorbed == [f"a{n}" for n in range(100 - VISITOR_IDS_KEPT, 100)]
    assert record.claimed == record.absorbed
    assert record.features.snapshot(T0 + 101 * 3600)["page_views"] == 200
    # The latest transfer, read again (a crash before its offset was committed): not twice.
    customers.run(recent)
    assert customers.store["u1"].features.snapshot(T0 + 101 * 3600)["page_views"] == 200


def test_a_batch_of_handoffs_gives_the_loop_its_turn_between_them() -> None:
    # Each handoff evaluates a user: a batch of many held the loop for 160 ms (seen in the
    # bench's two-worker part) until the loop got its turn between them, as between users.
    visitors = Worker({f"a{n}" for n in range(50)})
    visitors.run([message(n, visit(n, T0, anonymous_id=f"a{n}")) for n in range(50)])
    customers = Worker({f"u{n}" for n in range(50)})
    claims = customers.run([message(n, visit(100 + n, T0 + 60, user_id=f"u{n}",
                                             anonymous_id=f"a{n}")) for n in range(50)])
    assert len(claims) == 50
    steps = visitors.processor.steps(claims, visitors.store.get, visitors.owned.__contains__,
                                     slice_s=0.0)
    pauses = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            outcome = done.value
            break
        pauses += 1
    assert pauses >= 50
    assert outcome.deleted == {f"a{n}" for n in range(50)} and len(outcome.handoffs) == 50
