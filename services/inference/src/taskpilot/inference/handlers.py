"""Every NATS subscription of inference, in one place."""

from __future__ import annotations

from collections.abc import Callable

from taskpilot.contracts import subjects
from taskpilot.contracts.inference import (
    INFERENCE_WHAT_IF,
    INFERENCE_WRITE_PLAN,
    GenerateReply,
    MarketingPlanAnswer,
    ReplyWhatIf,
    WhatIfAnswer,
    WriteMarketingPlan,
)
from taskpilot.contracts.knowledge import KnowledgeUpdated
from taskpilot.inference.planning import PlanWriter
from taskpilot.inference.service import InferenceService
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import (
    ConsumerPolicy,
    ConsumerSpec,
    raw_body,
    responder,
    subscribe,
)
from taskpilot.tenancy import UnknownTenantError

GENERATE = ConsumerSpec(
    durable="inference-generate",
    stream=subjects.INFERENCE,
    filter_subject=subjects.GENERATE_REPLY.wildcard(),
    policy=ConsumerPolicy(workers=16, ack_wait_s=60.0),
)
KNOWLEDGE_UPDATED = ConsumerSpec(
    durable="inference-knowledge-updated",
    stream=subjects.KNOWLEDGE,
    filter_subject=subjects.KNOWLEDGE_UPDATED.wildcard(),
)


def register(bus: Bus, service: InferenceService, plans: PlanWriter) -> None:
    subscribe(bus, GENERATE, GenerateReply, service.generate)
    subscribe(bus, KNOWLEDGE_UPDATED, KnowledgeUpdated, service.knowledge_updated)

    def no_such_tenant(exc: Exception) -> str:
        return "no such tenant"

    def what_if_error(reason: str) -> WhatIfAnswer:
        return WhatIfAnswer(error=reason)

    def plan_refused(reason: str) -> MarketingPlanAnswer:
        return MarketingPlanAnswer(refused=reason)

    # A what-if replay of a past turn, and the weekly marketing plan asked by a tools job
    # (request-reply): errors and refusals travel in the answer, so the job can fall back to
    # its labelled draft.
    refusals: dict[type[Exception], Callable[[Exception], str]] = {
        UnknownTenantError: no_such_tenant
    }
    routes = [
        (
            INFERENCE_WHAT_IF,
            "inference-what-if",
            responder(
                ReplyWhatIf, what_if_error, service.what_if, service="inference", refusals=refusals
            ),
        ),
        (
            INFERENCE_WRITE_PLAN,
            "inference-write-plan",
            responder(
                WriteMarketingPlan,
                plan_refused,
                plans.write,
                service="inference",
                refusals=refusals,
            ),
        ),
    ]
    for channel, queue, respond in routes:
        bus.broker.subscriber(channel.wildcard(), queue=queue, title=queue, decoder=raw_body)(
            respond
        )
