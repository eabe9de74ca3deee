"""Composition root of ingest: builds every client once and wires them together."""

from __future__ import annotations

from taskpilot.ingest import handlers
from taskpilot.ingest.adapters import GraphApi, Obstore, PipelinedPublisher, SendLedger
from taskpilot.ingest.api import IngestHttp
from taskpilot.ingest.service import MediaService, SenderService, WebhookService
from taskpilot.ingest.settings import IngestSettings
from taskpilot.runtime.bootstrap import connect
from taskpilot.runtime.host import ServiceApp
from taskpilot.runtime.ops import add_ops_routes


async def create(settings: IngestSettings) -> ServiceApp:
    res = await connect(settings, "ingest")
    client = GraphApi.session(settings.graph_timeout_s)
    api = GraphApi(client, settings.graph_api_base, settings.graph_api_version)
    sender = SenderService(
        res.bus,
        res.tenants,
        api,
        await SendLedger.open(res.bus.js, settings.stream_replicas),
        settings.send_rate_per_number,
        settings.send_max_attempts,
        settings.retry_scale,
    )
    store = Obstore.from_url(settings.media_store(), allow_http=settings.media_store_allow_http)
    keeper = MediaService(
        res.bus, res.tenants, api, store, settings.media_max_bytes, settings.media_max_attempts
    )
    handlers.register(
        res.bus,
        sender,
        keeper if settings.media_consumer else None,
        settings.send_max_attempts,
        settings.media_max_attempts,
        settings.retry_scale,
    )
    publisher = PipelinedPublisher(res.bus)
    await publisher.start()
    http = IngestHttp(
        WebhookService(publisher, res.tenants),
        settings.max_body_bytes,
        title="TaskPilot ingest",
        version="0.1.0",
    )
    add_ops_routes(http, "ingest", res.readiness())
    return ServiceApp(
        "ingest",
        res.bus,
        http,
        settings.http_host,
        settings.http_port,
        on_stop=[client.close, res.close],
    )
