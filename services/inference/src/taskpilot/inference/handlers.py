"""Every NATS subscription of inference, in one place."""

from __future__ import annotations

from taskpilot.contracts import subjects
from taskpilot.contracts.inference import GenerateReply
from taskpilot.contracts.knowledge import KnowledgeUpdated
from taskpilot.inference.service import InferenceService
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import ConsumerPolicy, ConsumerSpec, subscribe

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


def register(bus: Bus, service: InferenceService) -> None:
    subscribe(bus, GENERATE, GenerateReply, service.generate)
    subscribe(bus, KNOWLEDGE_UPDATED, KnowledgeUpdated, service.knowledge_updated)
