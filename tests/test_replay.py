"""``segmenter replay``: the column mapping (pure), the command's errors, and a real broker."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from support import consume_all

from segmenter.settings import load_settings
from streams.runtime.topics import ensure_topics
from streams.tools.traffic.mapping import (
    MAX_REPORTED,
    MappingError,
    check_columns,
    csv_records,
    derive_event_id,
    jsonl_records,
    load_events,
    parse_map,
)
from streams.tools.traffic.replay import add_replay_parser, replay_events, run_replay

ORDERS = ["order_id=Order No,user_id=Customer,ts=Created At", "total=Amount", "items=Lines"]
TS = 1_767_323_045  # 2026-01-02T03:04:05Z


def load_csv(text: str, kind: str = "order", specs: list[str] | None = None) -> Any:
    mapping = parse_map(specs if specs is not None else ORDERS, kind)
    header, records = csv_records(text.splitlines(keepends=True))
    check_columns(mapping, kind, header)
    return load_events(records, kind, mapping)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="segmenter")
    add_replay_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["replay", *argv])


# -- mapping, no I/O ---------------------------------------------------------------------------


def test_csv_orders_with_the_shops_column_names() -> None:
    loaded = load_csv(
        "Order No,Customer,Created At,Amount,currency,Lines\n"
        f'1001,c-1,{TS},25.50,EUR,"[{{""product_id"": ""sku-1"", ""price"": ""25.5""}}]"\n'
        "1002, c-2 ,2026-01-02T04:04:05+01:00, 7 ,,\n"
        "1003,c-1,2026-01-02 03:05:05,0.0,usd,\n"
    )
    assert loaded.rows == 3 and loaded.rejected == 0
    assert loaded.events == [
        {"event_id": "order-1001", "ts": float(TS), "user_id": "c-1", "order_id": "1001",
         "total": 25.5, "currency": "EUR",
         "items": [{"product_id": "sku-1", "price": 25.5, "quantity": 1}]},
        # ISO with an offset (the same instant as the epoch above), whitespace, empty = missing
        {"event_id": "order-1002", "ts": float(TS), "user_id": "c-2", "order_id": "1002",
         "total": 7.0, "items": []},
        # ISO without a zone is UTC
        {"event_id": "order-1003", "ts": TS + 60.0, "user_id": "c-1", "order_id": "1003",
         "total": 0.0, "currency": "USD", "items": []},  # codes normalised to upper case
    ]


def test_same_named_columns_need_no_map_and_sorting_is_stable_by_time() -> None:
    loaded = load_csv(
        "user_id;ts;order_id;total\n"  # semicolon-separated export
        f"u1;{TS + 10};b;1\nu2;{TS};a;2\nu3;{TS + 10};c;3\nu4;{TS}.5;d;4\n", specs=[])
    assert [e["order_id"] for e in loaded.events] == ["a", "d", "b", "c"]
    assert loaded.events[1]["ts"] == TS + 0.5


def test_clicks_and_carts_get_event_ids_from_the_row_content() -> None:
    text = ("visitor,when,url,sku\n"
            f"a-1,{TS},/p/1,sku-1\n"
            f"a-1,{TS},/p/1,sku-1\n"  # the same row again: the same id (the worker dedupes)
            f"a-1,{TS},/p/2,sku-2\n")
    specs = ["anonymous_id=visitor,ts=when,page=url,product_id=sku"]
    first, again = load_csv(text, "click", specs), load_csv(text, "click", specs)
    ids = [event["event_id"] for event in first.events]
    assert ids == [event["event_id"] for event in again.events]
    assert ids[0] == ids[1] != ids[2] and ids[0].startswith("click-")
    assert first.events[2] == {"event_id": ids[2], "ts": float(TS), "anonymous_id": "a-1",
                               "page": "/p/2", "product_id": "sku-2"}

    carts = load_csv("user_id,ts,action,product_id,price,quantity\n"
                     f"u1,{TS},add,sku-1,19.90,2\nu1,{TS + 1},checkout,,,\n", "cart", [])
    assert [(e["action"], e["price"], e["quantity"]) for e in carts.events] == [
        ("add", 19.9, 2), ("checkout", 0.0, 1)]
    assert derive_event_id("order", {"x": "1"}, "1001") == "order-1001"


def test_bad_rows_are_rejected_with_line_and_reason() -> None:
    loaded = load_csv(
        "Order No,Customer,Created At,Amount,Lines\n"
        f"1,c-1,{TS},n/a,\n"                 # line 2: total not a number
        f"2,,{TS},5,\n"                      # line 3: nobody
        "3,c-1,yesterday,5,\n"               # line 4: ts not a time
        f"4,c-1,{TS * 1000},5,\n"            # line 5: milliseconds
        "\n"                                 # blank line: skipped, not a row
        f"5,c-1,{TS},5,[oops\n"              # line 7: items not JSON
        f"6,c-1,{TS},-1,,extra\n"            # line 8: more cells than the header
        f"7,c-1,{TS},5,\n"                   # line 9: fine
    )
    assert (loaded.rows, loaded.rejected, len(loaded.events)) == (7, 6, 1)
    reasons = {rejected.line: rejected.reason for rejected in loaded.examples}
    assert set(reasons) == {2, 3, 4, 5, 7, 8}
    assert reasons[2].startswith("total (column 'Amount'): Input should be a valid number")
    assert "(got 'n/a')" in reasons[2]
    assert reasons[3] == "event: needs user_id or anonymous_id"
    assert reasons[4] == "ts (column 'Created At'): not an ISO-8601 timestamp: 'yesterday'"
    assert "not between 1970 and 2100 (milliseconds?" in reasons[5]
    assert reasons[7].startswith("items: not a JSON list")
    assert reasons[8] == "6 cells but the header has 5 columns"


def test_any_valid_iso_date_is_taken_however_old() -> None:
    """A shop's export may start in 1997; only numbers are range-checked (ms for seconds)."""
    loaded = load_csv("user_id,ts,order_id,total\n"
                      "u1,1997-01-01,1,10\nu1,1969-07-20T20:17:40Z,2,10\nu1,852076800,3,10\n"
                      "u1,-5,4,10\n", specs=[])
    assert sorted(event["ts"] for event in loaded.events) == [-14182940.0, 852076800.0, 852076800.0]
    assert [rejected.line for rejected in loaded.examples] == [5]


def test_only_the_first_rejects_are_kept_but_all_are_counted() -> None:
    loaded = load_csv("user_id,ts,order_id,total\n" + "u1,x,1,1\n" * 25, specs=[])
    assert loaded.rejected == 25 and len(loaded.examples) == MAX_REPORTED
    assert [r.line for r in loaded.examples] == list(range(2, 2 + MAX_REPORTED))


def test_map_option_errors() -> None:
    assert parse_map(["user_id=customer, ts=created_at,", "total=amount"], "order") == {
        "user_id": "customer", "ts": "created_at", "total": "amount"}
    for specs, message in ((["userid=customer"], "order events have no field 'userid'"),
                           (["page=url"], "order events have no field 'page'"),
                           (["user_id"], "expected FIELD=COLUMN"),
                           (["user_id="], "expected FIELD=COLUMN"),
                           (["ts=a", "ts=b"], "ts is mapped twice")):
        with pytest.raises(MappingError, match=message):
            parse_map(specs, "order")
    assert parse_map(["page=url"], "click") == {"page": "url"}


def test_column_errors() -> None:
    columns = ["customer", "created_at", "order_id", "amount"]
    check_columns(parse_map(["user_id=customer,ts=created_at,total=amount"], "order"),
                  "order", columns)
    with pytest.raises(MappingError, match=r"not in the file: amt \(columns: amount, "):
        check_columns({"user_id": "customer", "ts": "created_at", "total": "amt"}, "order",
                      columns)
    with pytest.raises(MappingError, match="no column provides total: add --map total=COLUMN"):
        check_columns({"user_id": "customer", "ts": "created_at"}, "order", columns)
    with pytest.raises(MappingError, match="no column provides user_id or anonymous_id"):
        check_columns({"ts": "created_at", "total": "amount"}, "order", columns)


def test_json_lines_input() -> None:
    lines = [
        orjson.dumps({"id": 1001, "customer": {"x": 1}, "cust": 42, "at": TS,
                      "amount": 12.5, "items": [{"product_id": "s", "price": "12.5",
                                                 "quantity": 1}]}).decode(),
        "",
        '{"id": "1002", "cust": "c-9", "at": "2026-01-02T03:04:05Z", "amount": "3"}',
        '{"id": 1003, "cust": "c-9", "at": ',  # line 4: broken
        "[1, 2]",                              # line 5: not an object
        '{"id": 1004, "cust": null, "at": 1767323045, "amount": 1}',  # line 6: nobody
    ]
    mapping = parse_map(["order_id=id,user_id=cust,ts=at,total=amount"], "order")
    loaded = load_events(jsonl_records(lines), "order", mapping)
    assert [(e["event_id"], e["user_id"], e["total"]) for e in loaded.events] == [
        ("order-1001", "42", 12.5), ("order-1002", "c-9", 3.0)]
    assert loaded.events[0]["items"] == [{"product_id": "s", "price": 12.5, "quantity": 1}]
    assert [(r.line, r.reason.split(":")[0]) for r in loaded.examples] == [
        (4, "invalid JSON"), (5, "expected a JSON object, got list"), (6, "event")]
    check_columns(mapping, "order", loaded.columns)
    with pytest.raises(MappingError, match="JSON array"):
        list(jsonl_records(["[", '{"a": 1}', "]"]))


def test_limit_reads_only_the_first_rows() -> None:
    mapping = parse_map([], "order")
    _, records = csv_records(["user_id,ts,order_id,total\n"]
                             + [f"u1,{TS - i},{i},1\n" for i in range(10)])
    loaded = load_events(records, "order", mapping, limit=4)
    assert loaded.rows == 4 and [e["order_id"] for e in loaded.events] == ["3", "2", "1", "0"]


# -- the command, without a broker --------------------------------------------------------------


def test_dry_run_reports_and_produces_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("Customer,Created At,Order No,Amount\n"
                    f"c-1,{TS},1,10\nc-2,{TS + 3600},2,oops\nc-3,2026-01-02T05:04:05Z,3,5\n")
    settings = load_settings(environ={"SEGMENTER_KAFKA_BOOTSTRAP": "127.0.0.1:1"})  # no broker
    code = run_replay(settings, parse_args(
        [str(path), "--dry-run", "--map", "user_id=Customer,ts=Created At",
         "--map", "order_id=Order No,total=Amount"]))
    out, err = capsys.readouterr()
    assert code == 0
    assert "rejected line 3: total (column 'Amount')" in err
    assert out.strip().startswith("replay: 3 rows read, 2 valid (dry run: nothing produced), "
                                  "1 rejected; event time 2026-01-02T03:04:05+00:00 .. "
                                  "2026-01-02T05:04:05+00:00; ")


@pytest.mark.parametrize(("argv", "message"), [
    (["missing.csv"], "cannot read"),
    (["orders.txt"], "cannot tell the format"),
    (["orders.csv", "--map", "customer_id=Customer"], "order events have no field"),
    (["orders.csv", "--map", "user_id=Client"], "not in the file: Client"),
    (["orders.csv", "--kind", "click"], "no column provides page"),
    (["orders.jsonl", "--map", "user_id=Client"], "not in the file: Client"),
    (["latin1.csv"], "is not UTF-8 text"),
])
def test_usage_errors_exit_2_before_producing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    (tmp_path / "orders.csv").write_text(f"user_id,ts,order_id,total\nu1,{TS},1,2\n")
    (tmp_path / "orders.txt").write_text(f"user_id,ts,order_id,total\nu1,{TS},1,2\n")
    (tmp_path / "orders.jsonl").write_text('{"user_id": "u1", "ts": 1, "order_id": 1}\n')
    (tmp_path / "latin1.csv").write_bytes(f"user_id,ts,order_id,total\nJos\xe9,{TS},1,2\n"
                                          .encode("latin-1"))
    settings = load_settings(environ={"SEGMENTER_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    code = run_replay(settings, parse_args([str(tmp_path / argv[0]), *argv[1:]]))
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("segmenter replay: error: ") and message in err


def test_parser_rejects_bad_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["f.csv", "--rate", "-1"], ["f.csv", "--limit", "0"], ["f.csv", "--kind", "x"]):
        with pytest.raises(SystemExit) as exited:
            parse_args(argv)
        assert exited.value.code == 2
    assert "must be a number >= 0" in capsys.readouterr().err
    args = parse_args(["f.csv", "--map", "a=b", "--map", "c=d,e=f"])
    assert (args.kind, args.format, args.rate, args.limit, args.dry_run, args.map) == (
        "order", None, 0.0, None, False, ["a=b", "c=d,e=f"])


# -- against a real broker -----------------------------------------------------------------------

SCRIPT = """\
import argparse, os, sys
from segmenter.settings import load_settings
from streams.tools.traffic.replay import add_replay_parser, run_replay
parser = argparse.ArgumentParser(prog="segmenter")
add_replay_parser(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
bootstrap = os.environ["SEGMENTER_KAFKA_BOOTSTRAP"]
sys.exit(run_replay(load_settings(environ={"SEGMENTER_KAFKA_BOOTSTRAP": bootstrap}), args))
"""


def replay_command(argv: list[str]) -> list[str]:
    """``segmenter replay ...`` through streams.cli once it has the command, else directly."""
    from streams.cli import build_parser

    commands = next(action for action in build_parser()._actions
                    if isinstance(action, argparse._SubParsersAction))
    if "replay" in commands.choices:
        return [sys.executable, "-m", "streams.cli", "replay", *argv]
    return [sys.executable, "-c", SCRIPT, "replay", *argv]


def write_history(path: Path, orders: int = 500, customers: int = 50) -> dict[str, dict]:
    """Orders in shuffled time order, half with ISO and half with epoch times, plus 3 bad rows.

    Returns the expected events by event id; the bad rows are on lines 2, 100 and 400.
    """
    rng = random.Random(5)
    start = datetime(2025, 6, 1, tzinfo=UTC).timestamp()
    expected, rows = {}, []
    for number in range(orders):
        ts = start + rng.randrange(0, 180 * 86_400)
        customer, amount = f"cust-{rng.randrange(customers)}", rng.randrange(100, 50_000) / 100
        when = str(int(ts)) if number % 2 else datetime.fromtimestamp(ts, UTC).isoformat()
        rows.append(f"{10_000 + number},{customer},{when},{amount:.2f},EUR")
        expected[f"order-{10_000 + number}"] = {
            "event_id": f"order-{10_000 + number}", "ts": float(int(ts)), "user_id": customer,
            "order_id": str(10_000 + number), "total": amount, "currency": "EUR", "items": []}
    rng.shuffle(rows)
    for line, bad in ((2, f"1,cust-1,{int(start)},n/a,EUR"), (100, f"2,,{int(start)},5,EUR"),
                      (400, "3,cust-2,yesterday,5,EUR")):
        rows.insert(line - 2, bad)
    path.write_text("Order No,Customer,Created At,Amount,Currency\n" + "\n".join(rows) + "\n")
    return expected


async def consume(bootstrap: str, topic: str, count: int, timeout: float = 60.0) -> list[Any]:
    """Read ``topic`` from the start until ``count`` messages, then a little more (no extras)."""
    return await consume_all(bootstrap, topic, until=lambda got: len(got) >= count,
                             timeout=timeout, settle_ms=500)


async def run_cli(argv: list[str], bootstrap: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SEGMENTER_KAFKA_BOOTSTRAP": bootstrap}
    return await asyncio.to_thread(subprocess.run, replay_command(argv), env=env,
                                   capture_output=True, text=True, timeout=120)


@pytest.mark.integration
async def test_replay_produces_the_valid_rows_in_time_order_keyed_by_customer(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    expected = write_history(path)
    argv = [str(path), "--map", "order_id=Order No,user_id=Customer,ts=Created At",
            "--map", "total=Amount", "--map", "currency=Currency", "--no-follow"]
    topic = load_settings(environ={}).kafka.topics.orders

    done = await run_cli(argv, kafka_bootstrap)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    for line in (2, 100, 400):
        assert f"rejected line {line}: " in done.stderr
    assert done.stdout.startswith(f"replay: 503 rows read, 500 produced to {topic}, "
                                  "3 rejected; event time 2025-06-01T")
    assert "events/s" in done.stdout

    messages = await consume(kafka_bootstrap, topic, 500)
    values = [orjson.loads(message.value) for message in messages]
    assert len(values) == 500 and {v["event_id"]: v for v in values} == expected
    by_partition: dict[int, list[float]] = defaultdict(list)
    for message, value in zip(messages, values, strict=True):
        assert message.key.decode() == value["user_id"]
        by_partition[message.partition].append(value["ts"])
    assert len(by_partition) > 1
    assert all(times == sorted(times) for times in by_partition.values())

    again = await run_cli(argv, kafka_bootstrap)  # a second replay: the same event ids
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("replay: 503 rows read, 500 produced")
    by_id: dict[str, list[dict]] = defaultdict(list)
    for message in await consume(kafka_bootstrap, topic, 1000):
        value = orjson.loads(message.value)
        by_id[value["event_id"]].append(value)
    assert by_id == {event_id: [event, event] for event_id, event in expected.items()}


@pytest.mark.integration
async def test_replay_events_paces_to_the_rate_and_reports_progress(kafka_bootstrap: str) -> None:
    events = [{"event_id": f"c{i}", "ts": TS + i, "anonymous_id": f"a-{i % 7}", "page": "/"}
              for i in range(400)]
    await ensure_topics(load_settings(environ={"SEGMENTER_KAFKA_BOOTSTRAP": kafka_bootstrap}))
    progress: list[tuple[int, int]] = []
    started = time.perf_counter()
    sent = await replay_events(kafka_bootstrap, "shop.clicks", events, rate=2_000,
                               progress=lambda *p: progress.append(p))
    elapsed = time.perf_counter() - started
    assert sent == 400 and progress[-1] == (400, 400) and len(progress) > 5
    assert elapsed >= 0.15  # 400 events at 2,000/s: about 0.2 s
    messages = await consume(kafka_bootstrap, "shop.clicks", 400)
    assert sorted(orjson.loads(m.value)["event_id"] for m in messages) == sorted(
        e["event_id"] for e in events)
