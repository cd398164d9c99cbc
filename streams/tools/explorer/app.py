"""The segment explorer's web app (Starlette) and its server (uvicorn): ``segmenter ui``.

Routes: ``/`` every segmentation with its segments, KPIs, size plot and (behaviour) profile
map; ``/segment/{segmentation}/{segment}`` one segment; ``/user?id=`` a user's segments,
features and recent changes; ``/health`` for scripts. Read-only: it writes nothing anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from segmenter.settings import Settings
from streams.runtime.segment_history import Sample
from streams.tools.explorer import pages
from streams.tools.explorer.kafka_lookup import KafkaLookup
from streams.tools.explorer.store import ExplorerStore

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Starlette:
    store = ExplorerStore(settings)
    lookup = KafkaLookup(settings)

    async def overview(request: Request) -> Response:
        histories: dict[str, list[Sample]] = {}  # filled by the KPIs' reads
        catalogue = await store.catalogue(histories)
        for name in catalogue.keys() - histories.keys():
            histories[name] = await store.history(name)
        return HTMLResponse(pages.overview(catalogue, histories))

    async def segment(request: Request) -> Response:
        segmentation = request.path_params["segmentation"]
        name = request.path_params["segment"]
        profile = (await store.catalogue()).get(segmentation, {}).get(name)
        page = pages.segment_page(segmentation, name, profile,
                                  await store.history(segmentation))
        return HTMLResponse(page, status_code=200 if profile is not None else 404)

    async def user(request: Request) -> Response:
        user_id = request.query_params.get("id", "").strip()
        if not user_id:
            return RedirectResponse("/", status_code=303)
        memberships, catalogue = await store.user(user_id), await store.catalogue()
        features, changes = await _from_kafka(lookup, user_id)
        page = pages.user_page(user_id, memberships, catalogue, features, changes)
        found = bool(memberships) or features is not None
        return HTMLResponse(page, status_code=200 if found else 404)

    async def health(request: Request) -> Response:
        await store.reader.client.ping()
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await store.close()

    return Starlette(routes=[
        Route("/", overview),
        Route("/segment/{segmentation}/{segment}", segment),
        Route("/user", user),
        Route("/health", health),
    ], lifespan=lifespan)


async def _from_kafka(lookup: KafkaLookup, user_id: str
                      ) -> tuple[dict[str, float] | None, list[dict]]:
    """Features and changes; the page still shows the memberships when Kafka cannot answer."""
    try:
        return await asyncio.wait_for(
            asyncio.gather(lookup.features(user_id), lookup.changes(user_id)), timeout=20)
    except Exception as exc:  # whatever Kafka says, the page shows what Redis holds
        log.warning("user lookup in Kafka failed: %s", exc)
        return None, []


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8050) -> None:
    """Run the explorer until interrupted."""
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


def server(settings: Settings, host: str, port: int) -> uvicorn.Server:
    """A server to run beside other work (``segmenter demo``): ``await server.serve()``, and
    set ``server.should_exit`` to stop it."""
    config = uvicorn.Config(create_app(settings), host=host, port=port, log_level="warning")
    return uvicorn.Server(config)
