"""Every NATS subscription of tools, in one place."""

from __future__ import annotations

from taskpilot.contracts import subjects
from taskpilot.contracts.catalogue import OneOf
from taskpilot.contracts.conversation import CONVERSATION_EVENTS
from taskpilot.contracts.tools import (
    BookingCancelled,
    DeliverWebhook,
    ExecuteToolCall,
    JobCompleted,
    PaymentReceived,
    RunJob,
    SlotBooked,
    ToolCallCompleted,
)
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import ConsumerPolicy, ConsumerSpec, subscribe
from taskpilot.tools.jobs import Jobs
from taskpilot.tools.service import ToolsService
from taskpilot.tools.settings import ToolsSettings
from taskpilot.tools.webhooks import DELIVERY_CONSUMER, OutgoingWebhooks


def specs(settings: ToolsSettings) -> dict[str, ConsumerSpec]:
    return {
        "execute": ConsumerSpec(
            "tools-execute",
            subjects.TOOLS,
            subjects.TOOL_EXECUTE.wildcard(),
            # retries come from the service's RetryLater; one more delivery than it uses
            ConsumerPolicy(max_deliver=settings.execute_attempts + 1),
        ),
        "fan_out_conversation": ConsumerSpec(
            "tools-webhooks-conversation",
            subjects.CONVERSATION,
            subjects.CONVERSATION_EVENT.wildcard(),
        ),
        # the whole TOOLS stream; types that are not public events are skipped by the parser
        "fan_out_tools": ConsumerSpec(
            "tools-webhooks-tools", subjects.TOOLS, subjects.TOOLS.subjects[0]
        ),
        "deliver": ConsumerSpec(
            DELIVERY_CONSUMER,
            subjects.TOOLS,
            subjects.TOOL_WEBHOOK_DELIVERY.wildcard(),
            ConsumerPolicy(
                max_deliver=settings.webhook_attempts,
                backoff_s=tuple(settings.webhook_backoff_s),
            ),
        ),
        "jobs": ConsumerSpec(
            "tools-jobs",
            subjects.TOOL_JOBS,
            subjects.TOOL_JOB_RUN.wildcard(),
            ConsumerPolicy(
                max_deliver=settings.job_attempts,
                ack_wait_s=settings.job_ack_wait_s,
                backoff_s=(5.0, 30.0),
                workers=2,
            ),
        ),
    }


def register(
    bus: Bus,
    settings: ToolsSettings,
    tools: ToolsService,
    outgoing: OutgoingWebhooks,
    jobs: Jobs,
) -> None:
    spec = specs(settings)
    subscribe(bus, spec["execute"], ExecuteToolCall, tools.execute)
    subscribe(bus, spec["fan_out_conversation"], OneOf(*CONVERSATION_EVENTS), outgoing.fan_out)
    subscribe(
        bus,
        spec["fan_out_tools"],
        OneOf(ToolCallCompleted, SlotBooked, BookingCancelled, PaymentReceived, JobCompleted),
        outgoing.fan_out,
    )
    subscribe(bus, spec["deliver"], DeliverWebhook, outgoing.deliver)
    subscribe(bus, spec["jobs"], RunJob, jobs.run)
