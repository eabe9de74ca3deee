"""The baseline of bench/pipeline.py: a bare receive-and-publish webhook endpoint.

FastAPI on uvicorn (uvloop + httptools, one worker) that reads the body and publishes it to
JetStream with raw nats-py ``js.publish`` (waits for the ack), then answers 200. No signature
check, no tenant lookup, no parsing: the floor any webhook edge on this stack pays.

    python bench/baseline_server.py --port 8100 --nats-url nats://127.0.0.1:4222
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from nats.js.api import StorageType, StreamConfig

STREAM = "BENCH_BASELINE"
SUBJECT_PREFIX = "bench.baseline"


def create_app(nats_url: str) -> FastAPI:
    state: dict[str, object] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nc = await nats.connect(nats_url, name="bench-baseline")
        js = nc.jetstream()
        config = StreamConfig(
            name=STREAM, subjects=[f"{SUBJECT_PREFIX}.>"], storage=StorageType.FILE
        )
        try:
            await js.add_stream(config)
        except Exception:  # exists from an earlier start on the same store
            await js.update_stream(config)
        state["nc"], state["js"] = nc, js
        try:
            yield
        finally:
            await nc.drain()

    app = FastAPI(lifespan=lifespan)

    @app.post("/webhooks/whatsapp/{tenant_id}")
    async def receive(tenant_id: str, request: Request) -> JSONResponse:
        body = await request.body()
        ack = await state["js"].publish(f"{SUBJECT_PREFIX}.{tenant_id}", body)  # type: ignore[attr-defined]
        return JSONResponse({"published": 1, "seq": ack.seq})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        nc = state.get("nc")
        ready = nc is not None and nc.is_connected  # type: ignore[attr-defined]
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--nats-url", required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.nats_url),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        workers=1,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
