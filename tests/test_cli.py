"""The read-side commands on a real redis-server, and clear errors instead of tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from segmenter.engine import SegmentEngine
from segmenter.settings import load_settings
from streams.cli import main
from streams.runtime.sinks.redis import RedisMembership
from streams.tools.local.embedded import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
async def memberships(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SEGMENTER_REDIS_URL", redis_url)
    catalogue = SegmentEngine(load_settings(environ={})).catalogue()
    sink = RedisMembership(redis_url, "seg", catalogue)
    await sink.refresh_all_profiles()
    await sink.write(
        {"u1": {"rfm": "champions", "lifecycle": "loyal"}, "a9": {"lifecycle": "visitor"}},
        [("rfm", "champions"), ("lifecycle", "loyal"), ("lifecycle", "visitor")],
    )
    # Moving a user keeps one segment per segmentation, and sizes follow.
    await sink.write({"u1": {"rfm": "at_risk", "lifecycle": "lapsing"}},
                     [("rfm", "champions"), ("rfm", "at_risk"), ("lifecycle", "loyal"),
                      ("lifecycle", "lapsing")])
    await sink.close()
    return redis_url


async def test_user_command(memberships: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await _main(["user", "u1", "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == {
        "user_id": "u1", "segments": {"rfm": "at_risk", "lifecycle": "lapsing"}}
    assert await _main(["user", "u1"]) == 0
    assert capsys.readouterr().out.split() == ["lifecycle", "lapsing", "rfm", "at_risk"]
    assert await _main(["user", "nobody"]) == 0
    assert "in no segment" in capsys.readouterr().out


async def test_segments_command(memberships: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await _main(["segments", "--json"]) == 0
    catalogue = orjson.loads(capsys.readouterr().out)
    assert set(catalogue) == {"rfm", "lifecycle", "age_band", "cart_abandoners", "vip",
                              "browsers", "one_time_buyers", "value_tier"}
    assert catalogue["vip"]["vip"]["description"].startswith("Spent 1000")
    sizes = {name: p["size"] for name, p in catalogue["lifecycle"].items()}
    assert sizes == {"visitor": 1, "lapsing": 1, "loyal": 0, "new_customer": 0, "repeat": 0,
                     "churned": 0}
    assert catalogue["rfm"]["champions"]["size"] == 0
    assert catalogue["rfm"]["at_risk"]["description"]
    # With the KPIs (no orders written here: none to show).
    assert catalogue["rfm"]["at_risk"]["entries_7d"] == 0
    assert catalogue["rfm"]["at_risk"]["conversion"] is None
    assert await _main(["segments"]) == 0
    text = capsys.readouterr().out
    assert "lifecycle" in text and "lapsing" in text


async def _main(argv: list[str]) -> int:
    """The CLI runs its own event loop; keep it off the test's loop."""
    import asyncio

    return await asyncio.to_thread(main, argv)


def test_unreachable_services_give_one_line_errors(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    config = tmp_path / "wait.yaml"
    config.write_text("kafka:\n  startup_wait_s: 3\n")
    env = {"SEGMENTER_REDIS_URL": f"redis://{dead}/0", "SEGMENTER_KAFKA_BOOTSTRAP": dead,
           "SEGMENTER_CONFIG": str(config), "PATH": "/usr/bin:/bin"}
    for argv, expected in ((["user", "u1"], ["cannot use Redis at redis://"]),
                           (["worker"], ["cannot reach Kafka at", "retrying every",
                                         "gave up after kafka.startup_wait_s = 3 s"])):
        done = subprocess.run([sys.executable, "-m", "streams.cli", *argv], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stderr
        assert all(text in done.stderr for text in expected), done.stderr
        assert "Traceback" not in done.stderr
