"""The trainer fits the value model in a process of its own, and in its own thread if that
process dies: the same model either way."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from segmenter.clv import fit_value_model
from streams.runtime.behavior_sync import _in_process

TIERS = [("high", 0.1), ("low", 1.0)]


def summaries(customers: int = 400) -> list[list[float]]:
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(customers):
        repeats, age = float(rng.integers(0, 5)), float(rng.uniform(30, 100))
        rows.append([repeats, float(rng.uniform(0, age)) if repeats else 0.0, age,
                     float(rng.uniform(10, 100))])
    return rows


def test_a_fit_in_a_process_and_after_that_process_died_equals_a_fit_in_place() -> None:
    data = summaries()
    fits = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        fit = _in_process(fits)
        in_process = fit(data, 52.0, TIERS)
        for pid in list(fits._processes):  # killed, as the OOM killer would
            os.kill(pid, signal.SIGKILL)
        after_death = fit(data, 52.0, TIERS)
    finally:
        fits.shutdown(wait=False, cancel_futures=True)
    assert in_process == after_death == fit_value_model(data, 52.0, TIERS)


def test_the_fitting_process_exits_when_its_worker_is_killed() -> None:
    # A "worker" that starts the fitting process, reports its pid, and dies with -9.
    script = (
        "import os, signal\n"
        "from streams.runtime.behavior_sync import fitting_processes\n"
        "if __name__ == '__main__':\n"
        "    fits = fitting_processes()\n"
        "    fits.submit(os.getpid).result()\n"
        "    print(*fits._processes, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    [child] = [int(pid) for pid in done.stdout.split()]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.2)
    assert not _alive(child), f"the fitting process {child} outlived its worker"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
