"""One inbound WhatsApp message is one trace through ingest, conversation, inference,
knowledge and the sender (every service in one process, an in-memory span exporter)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskpilot.cli import demo
from taskpilot.cli.dev import build_apps, seed_demo
from taskpilot.ingest.meta import signed, text_webhook
from taskpilot.runtime.host import serve
from taskpilot.runtime.servers import NatsServer, free_port
from taskpilot.runtime.telemetry import setup_tracing
from taskpilot.runtime.testing import eventually
from taskpilot.runtime.testing.system import system_env

pytestmark = pytest.mark.asyncio(loop_scope="session")
SERVICES = ("ingest", "conversation", "inference", "knowledge", "tools", "analytics")


@pytest.fixture
async def everything(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[InMemorySpanExporter, dict[str, str]]]:
    exporter = InMemorySpanExporter()
    setup_tracing("taskpilot-test", processor=SimpleSpanProcessor(exporter))
    nats = NatsServer(tmp_path / "nats").start()
    ports = {name: free_port() for name in (*SERVICES, "sandbox")}
    env = {
        **system_env(
            nats.url,
            fresh_database_url,
            tmp_path,
            ports["sandbox"],
            {n: ports[n] for n in SERVICES},
        ),
        "TASKPILOT_DEV_SANDBOX_PORT": str(ports["sandbox"]),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the services read their settings from the environment
    apps = await build_apps(sandbox_port=ports["sandbox"])
    stop = asyncio.Event()
    running = asyncio.create_task(serve(apps, stop))
    urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
    try:
        await seed_demo(apps)
        async with httpx.AsyncClient(timeout=5) as client:
            # "listening" is logged before uvicorn has bound: wait until every service answers.
            async def ready() -> bool:
                try:
                    answers = [await client.get(f"{urls[n]}/readyz") for n in SERVICES]
                except httpx.HTTPError:
                    return False
                return all(a.status_code == 200 for a in answers)

            await eventually(ready, timeout=60, what="every service ready")
        yield exporter, urls
    finally:
        stop.set()
        await running
        nats.stop()
        os.environ.pop("TASKPILOT_DEV_SANDBOX_PORT", None)


async def test_one_lead_message_is_one_connected_trace(everything) -> None:  # type: ignore[no-untyped-def]
    exporter, urls = everything
    lead = "3461" + str(uuid.uuid4().int)[:8]
    body, headers = signed(
        text_webhook(demo.DEMO_NUMBER, lead, "What are your opening hours?"), demo.DEMO_APP_SECRET
    )
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{urls['ingest']}/webhooks/whatsapp/{demo.DEMO_TENANT}", content=body, headers=headers
        )
        assert response.status_code == 200

        async def replied() -> bool:
            sent = await client.get(f"{urls['sandbox']}/_sandbox/messages", params={"to": lead})
            return bool(sent.json())

        await eventually(replied, timeout=30, what="reply sent")

    def trace_of_this_message() -> list:  # type: ignore[type-arg]
        spans = exporter.get_finished_spans()
        roots = [s for s in spans if s.name == "whatsapp webhook"]
        mine = [
            r
            for r in roots
            if any(
                s.context.trace_id == r.context.trace_id and s.name == "consume SendWhatsAppMessage"
                for s in spans
            )
        ]
        return [s for s in spans if mine and s.context.trace_id == mine[-1].context.trace_id]

    async def complete() -> list | None:  # type: ignore[type-arg]
        spans = trace_of_this_message()
        services = {s.instrumentation_scope.name for s in spans}
        wanted = {f"taskpilot.{n}" for n in ("ingest", "conversation", "inference", "knowledge")}
        return spans if wanted <= services else None

    try:
        spans = await eventually(complete, timeout=10, what="spans of every hop in one trace")
    except AssertionError:
        print(
            "DEBUG",
            sorted({(s.instrumentation_scope.name, s.name) for s in trace_of_this_message()}),
        )
        raise
    names = {s.name for s in spans}
    assert {
        "whatsapp webhook",
        "consume WhatsAppMessageReceived",
        "consume GenerateReply",
        "consume ReplyGenerated",
        "consume SendWhatsAppMessage",
    } <= names
    ids = {s.context.span_id for s in spans}
    outside = [s for s in spans if s.parent is not None and s.parent.span_id not in ids]
    assert len([s for s in spans if s.parent is None]) + len(outside) == 1  # one connected tree
    tenants = {s.attributes.get("taskpilot.tenant_id") for s in spans if s.attributes}
    assert demo.DEMO_TENANT in tenants
