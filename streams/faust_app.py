"""The Faust app class, with one change: how long the worker's fetches may wait for data.

Faust creates its consumer with ``fetch_max_wait_ms=1500``. Apache Kafka answers a waiting
fetch as soon as data arrives, so that value only bounds idle polls; Tansu (the embedded broker)
holds every fetch that finds no data for the full wait, which would add up to 1.5 s to each
event's latency. A short wait costs a few idle requests per second on Kafka and keeps latency
low on both.
"""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka has no public setter; the value is read when the consumer starts.
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class SegmenterApp(faust.App):
    """A faust.App whose stream consumer waits at most ``fetch_max_wait_ms`` per fetch."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 100, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms

    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self)
