"""Redis over TLS with an ACL user, on a real redis-server: the worker verifies the server's
certificate, authenticates as its own user (not the default one), and never logs the password."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as redis
import trustme
from support import produce, wait_for, worker_env
from test_faults import ready

from streams.tools.local.embedded import EmbeddedRedis
from streams.tools.local.services import WorkerProcess

pytestmark = pytest.mark.integration

USER, PASSWORD = "segmenter", "tls-and-acl-s3cret"


class TlsRedis(EmbeddedRedis):
    """redis-server on TLS only, the default user off, one ACL user for the segmenter."""

    def __init__(self, certs: Path, log_path: Path) -> None:
        super().__init__(log_path=log_path)
        self.certs = certs

    def command(self) -> list[str]:
        c = self.certs
        return [self.binary, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
                "--tls-cert-file", str(c / "server.pem"), "--tls-key-file", str(c / "key.pem"),
                "--tls-ca-cert-file", str(c / "ca.pem"), "--tls-auth-clients", "no",
                "--save", "", "--appendonly", "no",
                "--user", "default", "off",
                "--user", USER, "on", f">{PASSWORD}", "~seg:*", "&*", "+@all"]

    def ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.certs / "ca.pem"))
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw, \
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(f"AUTH {USER} {PASSWORD}\r\nPING\r\n".encode())
                time.sleep(0.05)
                return b"+PONG" in tls.recv(64)
        except OSError:
            return False

    def url(self, password: str = PASSWORD) -> str:  # type: ignore[override]
        ca = self.certs / "ca.pem"
        return (f"rediss://{USER}:{password}@127.0.0.1:{self.port}/0"
                f"?ssl_ca_certs={ca}&ssl_cert_reqs=required")


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certs = tmp_path / "certs"
    certs.mkdir()
    authority.cert_pem.write_to_path(certs / "ca.pem")
    certificate.cert_chain_pems[0].write_to_path(certs / "server.pem")
    certificate.private_key_pem.write_to_path(certs / "key.pem")
    with TlsRedis(certs, tmp_path / "redis.log") as server:
        yield server


async def test_a_worker_writes_to_redis_over_tls_as_its_acl_user(
    kafka_bootstrap: str, tls_redis: TlsRedis, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, tls_redis.url(), tmp_path)
    order = {"event_id": "o1", "ts": time.time() - 60, "user_id": "over-tls", "order_id": "o1",
             "total": 30.0}
    store = redis.Redis.from_url(tls_redis.url(), decode_responses=True)
    try:
        with WorkerProcess(env, tmp_path / "w.log") as worker:
            await ready(worker)
            await produce(kafka_bootstrap,
                          [("shop.orders", b"over-tls", orjson.dumps(order))])

            async def written() -> bool:
                return await store.hget("seg:user:over-tls", "lifecycle") == "new_customer"

            await wait_for(written, timeout=60, what=lambda: worker.log()[-2000:])
            log = worker.log()
        assert PASSWORD not in log
        # The plaintext port is closed, and the password is what lets the worker in.
        with pytest.raises(redis.AuthenticationError):
            await redis.Redis.from_url(tls_redis.url("wrong")).ping()
    finally:
        await store.aclose()
