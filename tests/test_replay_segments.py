"""A year of orders exported as CSV, replayed with `segmenter replay` into a running worker,
gives the RFM and lifecycle segments a marketer works out by hand in a spreadsheet."""

from __future__ import annotations

import asyncio
import csv
import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from support import wait_for

from segmenter.settings import load_settings
from streams.tools.local.embedded import free_port
from streams.tools.local.services import WorkerProcess

pytestmark = pytest.mark.integration

DAY = 86_400.0
CUSTOMERS = 50
RFM = load_settings(environ={}).segmentations.rfm
LIFECYCLE = load_settings(environ={}).segmentations.lifecycle


def orders_of(i: int) -> int:
    return 1 + i % 5


def spend_of(i: int) -> float:
    # 4% apart, so no two customers share one of the online 1% money bins: exact = online.
    return round(25 * 1.04**((i * 17) % CUSTOMERS), 2)


def days_quiet(i: int) -> int:
    return (i * 37) % 330  # days from the customer's last order to the file's last order


def export(path: Path, end: float) -> list[dict[str, Any]]:
    """The shop's order export: customer, order_date, order_no, amount (a year of orders)."""
    rows = []
    for i in range(CUSTOMERS):
        last = end - days_quiet(i) * DAY - (i % 7) * 3600
        count, total = orders_of(i), spend_of(i)
        amounts = [round(total / count, 2)] * (count - 1)
        amounts.append(round(total - sum(amounts), 2))
        for k, amount in enumerate(amounts):
            ts = last - (count - 1 - k) * 9 * DAY
            rows.append({"customer": f"cust-{i:03d}", "order_no": f"{i}-{k}",
                         "order_date": datetime.fromtimestamp(ts, UTC).strftime(
                             "%Y-%m-%dT%H:%M:%SZ"), "amount": f"{amount:.2f}"})
    rows.append({"customer": "cust-end", "order_no": "end", "amount": "30.00",
                 "order_date": datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, ["order_no", "customer", "order_date", "amount"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def spreadsheet(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What a marketer computes from the export, following docs/outputs.md."""
    stamp = {r["order_no"]: datetime.fromisoformat(r["order_date"].replace("Z", "+00:00"))
             .timestamp() for r in rows}
    latest = max(stamp.values())
    sheet: dict[str, dict[str, Any]] = {}
    for row in rows:
        line = sheet.setdefault(row["customer"], {"F": 0, "M": 0.0, "last": 0.0})
        line["F"] += 1
        line["M"] = round(line["M"] + float(row["amount"]), 2)
        line["last"] = max(line["last"], stamp[row["order_no"]])
    size = len(sheet)
    for line in sheet.values():
        days = (latest - line["last"]) / DAY
        f_below = sum(other["F"] < line["F"] for other in sheet.values())
        m_below = sum(other["M"] < line["M"] for other in sheet.values())
        r = 5 - sum(days > edge for edge in RFM.recency_days)
        f, m = quintile(f_below, size), quintile(m_below, size)
        fm = math.floor((f + m) / 2 + 0.5)
        line.update(days=round(days, 2), R=r, F_score=f, M_score=m,
                    rfm=next(s.name for s in RFM.segments
                             if s.r[0] <= r <= s.r[1] and s.fm[0] <= fm <= s.fm[1]
                             and s.f[0] <= f <= s.f[1] and s.m[0] <= m <= s.m[1]),
                    lifecycle=stage(line["F"], days))
    return sheet


def quintile(below: int, size: int) -> int:
    """By the share of customers strictly below: the lowest tie group scores 1."""
    return max(1, min(5, 1 + math.floor(5 * below / size)))


def stage(orders: int, days: float) -> str:
    if days > LIFECYCLE.churned_after_days:
        return "churned"
    if days > LIFECYCLE.lapsing_after_days:
        return "lapsing"
    if orders >= LIFECYCLE.loyal_min_orders:
        return "loyal"
    return "repeat" if orders >= 2 else "new_customer"


async def test_replayed_orders_give_the_spreadsheet_s_segments(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "test.yaml"
    config.write_text(
        "kafka:\n  session_timeout_s: 6\n"
        f"worker:\n  data_dir: {tmp_path / 'data'}\n"
        "features:\n  allowed_lateness_minutes: 600000\n")
    env = {"SEGMENTER_KAFKA_BOOTSTRAP": kafka_bootstrap, "SEGMENTER_REDIS_URL": redis_url,
           "SEGMENTER_METRICS_PORT": str(free_port()), "SEGMENTER_CONFIG": str(config)}
    orders = tmp_path / "orders.csv"
    rows = export(orders, end=time.time() - 600)
    sheet = spreadsheet(rows)
    with (tmp_path / "spreadsheet.csv").open("w", newline="") as file:
        columns = ["customer", "F", "M", "days", "R", "F_score", "M_score", "rfm", "lifecycle"]
        writer = csv.DictWriter(file, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({"customer": c, **line} for c, line in sorted(sheet.items()))
    assert len({line["rfm"] for line in sheet.values()}) >= 6  # a varied shop

    store = redis.Redis.from_url(redis_url, decode_responses=True)
    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        # The replay waits for the running worker to catch up (its lag to fall to zero).
        replay = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "streams.cli", "replay", str(orders), "--kind", "order",
             "--map", "user_id=customer,ts=order_date,order_id=order_no,total=amount"],
            env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
        assert replay.returncode == 0, replay.stderr + worker.log()[-2000:]
        assert f"{len(rows)}" in replay.stdout
        async def online() -> dict[str, tuple[str | None, str | None]]:
            return {c: tuple(await store.hmget(f"seg:user:{c}", "rfm", "lifecycle"))
                    for c in sheet}

        expected = {c: (line["rfm"], line["lifecycle"]) for c, line in sheet.items()}

        async def agrees() -> bool:
            return await online() == expected

        async def differences() -> str:
            got = await online()
            return "\n".join(f"{c}: sheet {sheet[c]} != online {got[c]}"
                             for c in sorted(sheet) if got[c] != expected[c])

        try:
            await wait_for(agrees, timeout=90, what="Redis to match the spreadsheet")
        except AssertionError:
            pytest.fail(f"{await differences()}\n{worker.log()[-2000:]}")
        finally:
            await store.aclose()
