"""Every NATS subscription of inference, in one place."""

from __future__ import annotations

from faststream.nats import NatsMessage
from pydantic import ValidationError

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
from taskpilot.runtime.consumer import ConsumerPolicy, ConsumerSpec, raw_body, subscribe
from taskpilot.tenancy import UnknownTenantError, tenant_scope

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

    async def when_what_if_requested(body: bytes, msg: NatsMessage) -> bytes:
        """A what-if replay of a past turn (request-reply): errors travel in the answer."""
        try:
            request = ReplyWhatIf.model_validate_json(msg.body)
        except ValidationError as exc:
            answer = WhatIfAnswer(error=f"invalid request: {exc.error_count()} errors")
            return answer.model_dump_json().encode()
        if msg.raw_message.subject.split(".")[2] != request.tenant_id:
            answer = WhatIfAnswer(error="tenant in subject and body differ")
            return answer.model_dump_json().encode()
        with tenant_scope(request.tenant_id):
            try:
                answer = await service.what_if(request)
            except UnknownTenantError:
                answer = WhatIfAnswer(error="no such tenant")
        return answer.model_dump_json().encode()

    bus.broker.subscriber(
        INFERENCE_WHAT_IF.wildcard(),
        queue="inference-what-if",
        title="inference-what-if",
        decoder=raw_body,
    )(when_what_if_requested)

    async def when_plan_requested(body: bytes, msg: NatsMessage) -> bytes:
        """The weekly marketing plan, asked by a tools job (request-reply): a refusal and its
        reason travel in the answer, so the job can fall back to its labelled draft."""
        try:
            request = WriteMarketingPlan.model_validate_json(msg.body)
        except ValidationError as exc:
            answer = MarketingPlanAnswer(refused=f"invalid request: {exc.error_count()} errors")
            return answer.model_dump_json().encode()
        if msg.raw_message.subject.split(".")[2] != request.tenant_id:
            answer = MarketingPlanAnswer(refused="tenant in subject and body differ")
            return answer.model_dump_json().encode()
        with tenant_scope(request.tenant_id):
            try:
                answer = await plans.write(request)
            except UnknownTenantError:
                answer = MarketingPlanAnswer(refused="no such tenant")
        return answer.model_dump_json().encode()

    bus.broker.subscriber(
        INFERENCE_WRITE_PLAN.wildcard(),
        queue="inference-write-plan",
        title="inference-write-plan",
        decoder=raw_body,
    )(when_plan_requested)
