"""Composition root of inference."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from taskpilot.embeddings import default_embedder
from taskpilot.inference import handlers
from taskpilot.inference.domain import Thresholds
from taskpilot.inference.service import InferenceService, build_intent_index
from taskpilot.inference.settings import InferenceSettings
from taskpilot.runtime.bootstrap import connect
from taskpilot.runtime.host import ServiceApp
from taskpilot.runtime.ops import add_ops_routes


async def create(settings: InferenceSettings) -> ServiceApp:
    res = await connect(settings, "inference")
    embedder = await asyncio.to_thread(default_embedder)
    intents = await asyncio.to_thread(build_intent_index, embedder)
    limits = Thresholds(settings.intent_similarity, settings.intent_margin, settings.faq_similarity)
    service = InferenceService(
        res.bus, res.tenants, embedder, intents, limits, settings.knowledge_timeout_s
    )
    handlers.register(res.bus, service)
    http = FastAPI(title="TaskPilot inference", version="0.1.0")
    add_ops_routes(http, "inference", res.readiness())
    return ServiceApp(
        "inference", res.bus, http, settings.http_host, settings.http_port, on_stop=[res.close]
    )
