"""Where a part's CPU went: the workers' own CPU time, and how busy the whole machine was.

Throughput alone cannot tell a design that does not scale from a machine that is full: on two
cores shared by the broker, Redis and the workers, a second worker can only take what the
others leave. So the parts that count events/s also read, over the same window, the workers'
CPU seconds (with their child processes) and the machine's busy cores, through psutil. Where
they cannot be read the figures are absent (None), never made up.

>>> meter = CpuMeter([psutil.Process().pid])
>>> _ = sum(range(200_000))
>>> used = meter.read()
>>> used is None or (used.workers_s >= 0 and 0 <= used.busy_cores <= used.cores)
True
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class CpuUsed:
    """CPU used over a window: the workers' seconds, and the machine's busy cores (of
    ``cores``) on average."""

    workers_s: float
    busy_cores: float
    cores: int

    def per_event_us(self, events: float) -> float:
        return 1e6 * self.workers_s / max(events, 1.0)

    def describe(self, events: float) -> str:
        return (f"workers' CPU {self.per_event_us(events):.0f} us/event; machine busy "
                f"{self.busy_cores:.2f} of {self.cores} cores")


class CpuMeter:
    """Started at construction; :meth:`read` gives what was used since."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.started = _sample(pids)

    def read(self) -> CpuUsed | None:
        ended = _sample(self.pids)
        if self.started is None or ended is None:
            return None
        (workers0, idle0, total0), (workers1, idle1, total1) = self.started, ended
        cores = psutil.cpu_count() or 1
        busy_share = 1 - (idle1 - idle0) / max(total1 - total0, 1e-9)
        return CpuUsed(workers1 - workers0, busy_share * cores, cores)


def _sample(pids: list[int]) -> tuple[float, float, float] | None:
    """(workers' CPU seconds, machine idle seconds, machine total seconds)."""
    try:
        workers = sum(_process_seconds(pid) for pid in pids)
        machine = psutil.cpu_times()
    except psutil.Error:
        return None
    # Guest time is already counted in user and nice time.
    total = sum(machine) - getattr(machine, "guest", 0) - getattr(machine, "guest_nice", 0)
    return workers, machine.idle + getattr(machine, "iowait", 0), total


def _process_seconds(pid: int) -> float:
    """User and system CPU seconds of a process and its direct children (a worker's process
    pool); a child gone meanwhile counts nothing."""
    process = psutil.Process(pid)
    seconds = 0.0
    for each in [process, *process.children()]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        seconds += times.user + times.system
    return seconds
