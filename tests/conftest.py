"""Shared fixtures: a real Kafka-compatible broker (Tansu) and a real redis-server per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.tools.local.embedded import EmbeddedKafka, EmbeddedRedis


@pytest.fixture
def kafka_bootstrap(tmp_path: Path) -> Iterator[str]:
    """A fresh memory-only Tansu broker on a free port: ``"127.0.0.1:PORT"``."""
    with EmbeddedKafka(log_path=tmp_path / "tansu.log") as kafka:
        yield kafka.bootstrap


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A fresh redis-server without persistence on a free port: ``"redis://127.0.0.1:PORT/0"``."""
    with EmbeddedRedis(log_path=tmp_path / "redis.log") as redis:
        yield redis.url
