"""The segment explorer (``segmenter ui``) in a real headless Chromium (Debian's package,
driven by Playwright), against a live worker on a real broker and redis-server fed with
simulated shop traffic: the page loads, its plots carry the worker's figures from Redis, the
lookup finds a user. Screenshots go to the test's directory and to ``test-artifacts/``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as redis
from support import TOPIC, event_message, produce, wait_for, worker_env

from streams.runtime.segment_history import SegmentHistory, read_history
from streams.tools.local.embedded import free_port, kill_with_parent
from streams.tools.local.services import WorkerProcess
from streams.tools.traffic.personas import plan_events

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
CONFIG = (
    "  history_interval_s: 1\n"
    # a compressed history: three topics consumed side by side drift apart in event time
    "features:\n  allowed_lateness_minutes: 200000\n"
    "segmentations:\n  behavior:\n    warmup_users: 60\n    publish_interval_s: 0.5\n"
    "    refit_interval_s: 3600\n"
)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Any]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def env(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return worker_env(kafka_bootstrap, redis_url, tmp_path, config=CONFIG)


@contextlib.contextmanager
def running_explorer(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``segmenter ui`` on a free port, as a child process; yields its URL."""
    port = free_port()
    with (tmp_path / "ui.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "ui", "--port", str(port)],
            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=kill_with_parent)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"{url}/health"):
            assert process.poll() is None, (tmp_path / "ui.log").read_text()
            assert time.monotonic() < deadline, "the explorer did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


async def shop(kafka: str, users: int, store: Any, worker: WorkerProcess) -> list[str]:
    """Simulated shoppers' 60 days in two waves: the second only once the worker has handled
    the first and sampled the history since, so that the samples see segments grow."""
    events, plans = plan_events(users=users, days=60, seed=4, end_ts=time.time() - 60)
    messages = [event_message(TOPIC[e.pop("kind")], e) for e in events]
    split = len(messages) * 3 // 4
    await produce(kafka, messages[:split])
    await wait_for(lambda: _true(worker.handled() >= split), timeout=60,
                   what=lambda: "the first wave handled\n" + worker.log())
    handled_at = time.time()

    async def sampled_since() -> bool:
        samples = await read_history(store, "seg", "lifecycle")
        return bool(samples) and samples[-1].t > handled_at + 0.1

    await wait_for(sampled_since, timeout=30, what="a history sample after the first wave")
    await produce(kafka, messages[split:])
    return sorted(plans)


async def _true(value: bool) -> bool:
    return value


async def settled(store: Any, users: list[str], worker: WorkerProcess) -> None:
    """Every user placed by the behaviour model, and two history samples in a row alike."""
    async def placed() -> bool:
        found = [await store.hget(f"seg:user:{user}", "behavior") for user in users]
        return None not in found

    await wait_for(placed, timeout=120, what=lambda: "behaviour segments\n" + worker.log())

    async def steady() -> bool:
        samples = await read_history(store, "seg", "lifecycle")
        return len(samples) >= 4 and samples[-1].segments == samples[-2].segments

    await wait_for(steady, timeout=60, what="a steady size history")


async def test_the_explorer_in_chromium(kafka_bootstrap: str, store: Any, env: dict[str, str],
                                        tmp_path: Path) -> None:
    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        users = await shop(kafka_bootstrap, 150, store, worker)
        await settled(store, users, worker)
        memberships = {user: await store.hgetall(f"seg:user:{user}") for user in users}
        with running_explorer(env, tmp_path) as url:
            # the user in the most segmentations: the lookup has the most to show
            user = max(users, key=lambda u: (len(memberships[u]), u))
            shots = await _browse(url, store, user, tmp_path / "screenshots")
    ARTIFACTS.mkdir(exist_ok=True)
    for shot in shots:
        assert shot.stat().st_size > 10_000  # a page drawn, not a blank
        shutil.copy(shot, ARTIFACTS / shot.name)


async def _browse(url: str, store: Any, user: str, shots: Path) -> list[Path]:
    """Load the pages in Chromium, check them against Redis, return the screenshots."""
    from playwright.async_api import async_playwright

    shots.mkdir(parents=True)
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            shots.parent / "chromium-profile", executable_path=CHROMIUM, headless=True,
            args=BROWSER_FLAGS, viewport={"width": 1320, "height": 900})
        try:
            page = await context.new_page()
            response = await page.goto(url + "/")
            assert response is not None and response.status == 200
            assert await page.title() == "segments · segment explorer"
            await _check_overview(page, store)
            await page.screenshot(path=shots / "explorer-overview.png", full_page=True)
            await page.screenshot(path=shots / "explorer-top.png", full_page=True,
                                  clip={"x": 0, "y": 0, "width": 1320, "height": 1500})
            await _check_segment_page(page, store)
            await page.screenshot(path=shots / "explorer-segment.png", full_page=True)
            await _check_lookup(page, store, user)
            await page.screenshot(path=shots / "explorer-user.png", full_page=True)
        finally:
            await context.close()
    return sorted(shots.glob("*.png"))


async def _check_overview(page: Any, store: Any) -> None:
    """Each segmentation's size plot: one line per segment (up to twelve), whose points are the
    history's samples, the last one the segment's members in Redis now; the behaviour map: a
    cell per segment and feature."""
    segmentations = sorted([key.removeprefix("seg:segments:")
                            async for key in store.scan_iter(match="seg:segments:*")])
    drawn = await page.eval_on_selector_all("section[data-segmentation]",
                                            "els => els.map(e => e.dataset.segmentation)")
    assert sorted(drawn) == segmentations and "behavior" in drawn
    for segmentation in ("lifecycle", "rfm", "behavior"):
        history = await read_history(store, "seg", segmentation)
        points = await page.eval_on_selector_all(
            f'section[data-segmentation="{segmentation}"] .size-chart circle.point',
            "els => els.map(e => [e.dataset.series, +e.dataset.t, +e.dataset.value])")
        assert len(points) > 10
        for segment, t, value in points:
            sample = next(s for s in history if round(s.t) == t)
            assert sample.segments[segment][0] == value
        last = {segment: value for segment, _, value in sorted(points, key=lambda p: p[1])}
        assert last == {segment: await store.scard(f"seg:members:{segmentation}:{segment}")
                        for segment in last}
        assert any(value > 0 for value in last.values())
    profiles = {segment: orjson.loads(profile) for segment, profile in
                (await store.hgetall("seg:segments:behavior")).items()}
    cells = await page.eval_on_selector_all(
        "svg rect.cell", "els => els.map(e => [e.dataset.segment, e.dataset.feature])")
    assert {segment for segment, _ in cells} == set(profiles) and len(profiles) >= 2
    assert len(cells) == 10 * len(profiles)


async def _check_segment_page(page: Any, store: Any) -> None:
    """A segment's own page, reached from the overview: its size and flows."""
    await page.click('section[data-segmentation="lifecycle"] tr[data-segment="visitor"] a')
    await page.wait_for_selector("svg rect.bar", state="attached")
    members = await store.scard("seg:members:lifecycle:visitor")
    values = await page.eval_on_selector_all(
        ".size-chart circle.point", "els => els.map(e => +e.dataset.value)")
    assert values and values[-1] == members
    entries = await page.eval_on_selector_all(
        'rect.bar[data-kind="entries"]', "els => els.map(e => +e.dataset.value)")
    assert sum(entries) > 0  # the second wave entered after the first samples


async def _check_lookup(page: Any, store: Any, user: str) -> None:
    """The lookup form finds the user: the segments shown are Redis's, with features and the
    change events that led there."""
    await page.fill("#lookup input[name=id]", user)
    await page.click("#lookup button")
    await page.wait_for_selector("#user[data-found=true]")
    shown = await page.eval_on_selector_all(
        "tr.membership", "els => els.map(e => [e.dataset.segmentation, e.dataset.segment])")
    assert dict(shown) == await store.hgetall(f"seg:user:{user}")
    features = dict(await page.eval_on_selector_all(
        ".feature", "els => els.map(e => [e.children[0].innerText, e.children[1].innerText])"))
    assert "orders" in features and "days_since_last_visit" in features
    changes = await page.eval_on_selector_all("tr.change", "els => els.length")
    assert changes > 0


async def test_history_sampled_once_per_interval_shop_wide_and_capped(
        redis_url: str, store: Any) -> None:
    """Two workers tick: one sample per interval; totals summed from the KPI days; the list
    keeps the latest ``samples``; nothing before the worker is ready."""
    await store.sadd("seg:members:vip:vip", "u1", "u2")
    await store.hset("seg:segments:vip", "vip", "{}")
    await store.hset("seg:kpi:vip:vip", mapping={
        "20000:entries": 3, "20001:entries": 2, "20001:exits": 1, "20001:quick_exits": 1,
        "20001:orders": 7})
    client = redis.Redis.from_url(redis_url)
    try:
        waiting = SegmentHistory(client, "seg", 0.2, samples=3, ready=lambda: False)
        assert not await waiting.tick()
        first, second = (SegmentHistory(client, "seg", 0.2, samples=3) for _ in range(2))
        assert await first.tick()
        assert not await second.tick() and not await first.tick()
        samples = await read_history(store, "seg", "vip")
        assert [s.segments for s in samples] == [{"vip": (2, 5, 1)}]
        for _ in range(4):
            await asyncio.sleep(0.25)
            await store.sadd("seg:members:vip:vip", f"u{time.monotonic_ns()}")
            assert await second.tick()
        samples = await read_history(store, "seg", "vip")
        assert [s.segments["vip"][0] for s in samples] == [4, 5, 6]
        assert samples[0].t < samples[1].t < samples[2].t
    finally:
        await client.aclose()
