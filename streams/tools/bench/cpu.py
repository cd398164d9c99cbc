"""Where a part's CPU went: the workers' own CPU time, and how busy the whole machine was.

Throughput alone cannot tell a design that does not scale from a machine that is full: on two
cores shared by the broker, Redis and the workers, a second worker can only take what the
others leave. So the parts that count events/s also read, over the same window, the workers'
CPU seconds (with their child processes) and the machine's busy cores (``/proc/stat``).
Linux only; elsewhere the figures are absent (None), never made up.

>>> meter = CpuMeter([os.getpid()])
>>> _ = sum(range(200_000))
>>> used = meter.read()
>>> used is None or (used.workers_s >= 0 and 0 <= used.busy_cores <= used.cores)
True
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


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
        (workers0, busy0, total0), (workers1, busy1, total1) = self.started, ended
        cores = os.cpu_count() or 1
        share = (busy1 - busy0) / max(total1 - total0, 1)
        return CpuUsed(workers1 - workers0, share * cores, cores)


def _sample(pids: list[int]) -> tuple[float, int, int] | None:
    """(workers' CPU seconds, machine busy ticks, machine total ticks), None off Linux."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(n) for n in stat.readline().split()[1:]]
        workers = sum(_process_seconds(pid) for pid in _with_children(pids))
    except OSError:
        return None
    idle = fields[3] + fields[4]  # idle and iowait
    return workers, sum(fields) - idle, sum(fields)


def _with_children(pids: list[int]) -> list[int]:
    """The processes and their direct children (a worker's process pool)."""
    wanted, found = set(pids), list(pids)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if _stat_fields(int(entry))[1] in wanted:
                    found.append(int(entry))
            except OSError:  # gone meanwhile
                continue
    return found


def _process_seconds(pid: int) -> float:
    """User and system CPU seconds of a process (0 once it is gone)."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (fields[11] + fields[12]) / TICKS


def _stat_fields(pid: int) -> list[int]:
    """The numeric fields of /proc/<pid>/stat after the command name (state skipped):
    index 1 is the parent's pid, 11 and 12 user and system ticks."""
    with open(f"/proc/{pid}/stat") as stat:
        rest = stat.read().rsplit(")", 1)[1].split()
    return [0, *(int(n) for n in rest[1:])]
