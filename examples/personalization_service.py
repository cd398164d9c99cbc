"""Personalization service: the offer to show a user, from their segments in Redis.

An example reader of the segment memberships the workers keep in Redis (see docs/outputs.md,
"Redis"): the hash ``seg:user:{user_id}`` maps each segmentation to the user's segment in it, so
one ``HGETALL`` per request gives all of a user's segments (``seg`` is the configured
``redis.key_prefix``). It relies only on that key layout, so it can be copied out of this
repository.

    GET /users/{user_id}/offers
    -> {"user_id": "u-42", "segments": {"rfm": "champions", "lifecycle": "loyal", "vip": "vip"},
        "offer": {"id": "vip-early-access", "title": "..."}}

A user Redis knows nothing of (never seen, or forgotten) gets no segments and the default offer.

    python examples/personalization_service.py --redis-url redis://127.0.0.1:6379/0 --port 8080
    curl http://127.0.0.1:8080/users/u-42/offers

Needs only redis (redis.asyncio) and orjson; the HTTP server is the standard library's asyncio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

#: (segmentation, segment) -> offer, best first: the first segment the user is in decides.
#: A rule segment's segmentation is the rule's name (``vip`` is the segment ``vip`` of ``vip``).
OFFERS: list[tuple[tuple[str, str], dict[str, str]]] = [
    (("cart_abandoners", "cart_abandoners"),
     {"id": "cart-reminder", "title": "Your cart is waiting: free shipping today"}),
    (("vip", "vip"), {"id": "vip-early-access", "title": "Early access to the new collection"}),
    (("rfm", "champions"),
     {"id": "vip-early-access", "title": "Early access to the new collection"}),
    (("rfm", "cant_lose_them"), {"id": "win-back-20", "title": "We miss you: 20% off"}),
    (("rfm", "at_risk"), {"id": "win-back-15", "title": "We miss you: 15% off"}),
    (("lifecycle", "new_customer"),
     {"id": "second-order-10", "title": "10% off your second order"}),
    (("lifecycle", "visitor"), {"id": "first-order-10", "title": "10% off your first order"}),
]
DEFAULT_OFFER = {"id": "bestsellers", "title": "This week's bestsellers"}

OFFERS_PATH = re.compile(r"^/users/(?P<user_id>[^/]+)/offers$")
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           503: "Service Unavailable"}


def choose_offer(segments: dict[str, str]) -> dict[str, str]:
    """The offer of the user's best-placed segment, else the default.

    >>> choose_offer({"lifecycle": "repeat", "vip": "vip"})["id"]
    'vip-early-access'
    >>> choose_offer({"lifecycle": "repeat"})["id"]
    'bestsellers'
    """
    for (segmentation, segment), offer in OFFERS:
        if segments.get(segmentation) == segment:
            return offer
    return DEFAULT_OFFER


class OfferService:
    """Answers HTTP requests; one Redis round trip per request."""

    def __init__(self, store: redis.Redis, key_prefix: str) -> None:
        self.store = store
        self.key_prefix = key_prefix

    async def offers(self, user_id: str) -> dict[str, Any]:
        segments = await self.store.hgetall(f"{self.key_prefix}:user:{user_id}")
        return {"user_id": user_id, "segments": segments, "offer": choose_offer(segments)}

    async def answer(self, request_head: bytes) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) for a request's head (request line and headers)."""
        parts = request_head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3:
            return 400, {"error": "malformed request line"}
        method, target, _version = parts
        match = OFFERS_PATH.match(urlsplit(target).path)
        if match is None:
            return 404, {"error": "not found: try GET /users/{user_id}/offers"}
        if method != "GET":
            return 405, {"error": "only GET"}
        try:
            return 200, await self.offers(unquote(match["user_id"]))
        except RedisError as error:
            # The page renders without personalization rather than waiting on a dead store.
            return 503, {"error": f"segments unavailable: {type(error).__name__}"}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            status, body = await self.answer(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status, body = 400, {"error": "incomplete request"}
        payload = orjson.dumps(body)
        writer.write(
            f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
        try:
            await writer.drain()
        except ConnectionError:
            pass  # the client went away; nothing to tell it
        finally:
            writer.close()


async def serve(args: argparse.Namespace) -> None:
    store = redis.Redis.from_url(args.redis_url, decode_responses=True)
    service = OfferService(store, args.key_prefix)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = await asyncio.start_server(service.handle, args.host, args.port)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        await store.aclose()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=os.environ.get("SEGMENTER_REDIS_URL",
                                                              "redis://127.0.0.1:6379/0"),
                        help="the workers' Redis (default: $SEGMENTER_REDIS_URL)")
    parser.add_argument("--key-prefix", default="seg", help="the workers' redis.key_prefix")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
