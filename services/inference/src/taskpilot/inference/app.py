"""Composition root of inference: builds every client and passes it down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from taskpilot.embeddings import default_embedder
from taskpilot.inference import handlers
from taskpilot.inference.adapters.cache_store import KvCacheStore
from taskpilot.inference.adapters.llm import ChatModel
from taskpilot.inference.adapters.spend import KvSpendLedger
from taskpilot.inference.cascade import Cascade
from taskpilot.inference.domain.budget import Budget
from taskpilot.inference.domain.decisions import Thresholds
from taskpilot.inference.planning import PlanWriter
from taskpilot.inference.service import CacheSettings, InferenceService
from taskpilot.inference.settings import InferenceSettings, ModelsConfig
from taskpilot.inference.spending import Spending
from taskpilot.inference.train import load_model
from taskpilot.runtime.bootstrap import connect
from taskpilot.runtime.host import ServiceApp
from taskpilot.runtime.ops import add_ops_routes
from taskpilot.tenancy import TenantDirectory, UnknownTenantError
from taskpilot.tenancy.buckets import Buckets

log = logging.getLogger(__name__)


def build_model(config: ModelsConfig) -> ChatModel | None:
    """The LiteLLM adapter when a remote model is configured; None (and no import) otherwise."""
    if not config.remote:
        return None
    from taskpilot.inference.adapters.llm import LiteLLMChatModel

    model = LiteLLMChatModel(config)
    log.info("models configured for tiers %s", sorted(model.tiers))
    return model


def budget_lookup(
    settings: InferenceSettings, tenants: TenantDirectory
) -> Callable[[str], Awaitable[Budget | None]]:
    """The budget set in onboarding (the tenant's profile in the directory), else the one
    configured here for the tenant, else the configured default."""

    async def budget_of(tenant_id: str) -> Budget | None:
        try:
            profile = (await tenants.get(tenant_id)).profile
        except UnknownTenantError:
            profile = None
        if profile is not None and profile.monthly_budget_usd is not None:
            return Budget(profile.monthly_budget_usd, profile.budget_near_share)
        amount = settings.tenant_budgets_usd.get(tenant_id, settings.monthly_budget_usd)
        return None if amount is None else Budget(amount, settings.budget_near_share)

    return budget_of


async def create(settings: InferenceSettings) -> ServiceApp:
    res = await connect(settings, "inference")
    embedder = await asyncio.to_thread(default_embedder)
    intents = await asyncio.to_thread(load_model, embedder)
    limits = Thresholds(
        settings.faq_similarity,
        settings.intent_thresholds
        if settings.intent_thresholds is not None
        else intents.thresholds,
    )
    models = settings.models_config()
    model = await asyncio.to_thread(build_model, models)
    cascade = Cascade(model, models.max_tokens, models.deadline_s) if model else None
    replicas = settings.stream_replicas
    store = await KvCacheStore.open(
        res.bus.js, settings.cache_bucket, settings.cache_ttl_s, replicas
    )
    ledger = await KvSpendLedger.open(res.bus.js, settings.spend_bucket, replicas)
    spending = Spending(
        ledger,
        budget_lookup(settings, res.tenants),
        Buckets(settings.tenant_requests_per_s, settings.tenant_request_burst),
        Buckets(settings.tenant_tokens_per_s, settings.tenant_token_burst),
        settings.rate_wait_s,
    )
    service = InferenceService(
        res.bus,
        res.tenants,
        embedder,
        intents,
        limits,
        settings.knowledge_timeout_s,
        cache_settings=CacheSettings(store, settings.cache_similarity, settings.cache_ttl_s),
        spending=spending,
        cascade=cascade,
    )
    plans = PlanWriter(
        model,
        res.tenants,
        spending,
        res.bus.publish,
        max_tokens=settings.plan_max_tokens,
        deadline_s=settings.plan_deadline_s,
    )
    handlers.register(res.bus, service, plans)
    http = FastAPI(title="TaskPilot inference", version="0.2.0")
    add_ops_routes(http, "inference", res.readiness())
    return ServiceApp(
        "inference",
        res.bus,
        http,
        settings.http_host,
        settings.http_port,
        on_stop=[store.close, res.close],
    )
