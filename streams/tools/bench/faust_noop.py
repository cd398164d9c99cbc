"""A Faust agent that does nothing but count: the benchmark's yardstick for Faust itself.

``python -m streams.tools.bench.faust_noop COUNT`` (settings from the environment, as for a worker)
reads the input topics with an agent iterating its stream, the way a Faust application normally
consumes, and prints ``{"events": N, "seconds": S}`` once it has seen COUNT events.
"""

from __future__ import annotations

import os
import sys
import time

import faust
import orjson

from segmenter.settings import load_settings
from streams.runtime.app import create_app


def main(count: int) -> None:
    settings = load_settings()
    # A group of its own: its commits must not move the worker's offsets.
    settings = settings.model_copy(update={"app_id": f"{settings.app_id}-noop"})
    settings.worker.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    source = app.topic(*settings.kafka.topics.inputs, key_serializer="raw",
                       value_serializer="raw")
    state = {"seen": 0, "started": 0.0}

    @app.agent(source)
    async def count_events(stream: faust.StreamT) -> None:
        async for _ in stream:
            state["started"] = state["started"] or time.perf_counter()
            state["seen"] += 1
            if state["seen"] >= count:
                seconds = time.perf_counter() - state["started"]
                # File descriptor 1: Faust's worker has replaced sys.stdout with a logger.
                os.write(1, orjson.dumps({"events": state["seen"], "seconds": seconds}) + b"\n")
                os._exit(0)  # the yardstick is taken: no orderly shutdown needed

    faust.Worker(app, loglevel="error", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main(int(sys.argv[1]))
