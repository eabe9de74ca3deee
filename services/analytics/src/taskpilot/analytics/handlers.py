"""Every NATS subscription of analytics, in one place."""

from __future__ import annotations

from taskpilot.analytics.service import Projector
from taskpilot.contracts import subjects
from taskpilot.contracts.catalogue import OneOf
from taskpilot.contracts.conversation import CONVERSATION_EVENTS
from taskpilot.contracts.dlq import DeadLettered
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import ConsumerPolicy, ConsumerSpec, subscribe

# Projections apply a conversation's events in relay order (a reply's status after the reply).
PROJECTOR = ConsumerSpec(
    "analytics-projector",
    subjects.CONVERSATION,
    subjects.CONVERSATION_EVENT.wildcard(),
    ConsumerPolicy(ordered=True),
)
DEAD_LETTERS = ConsumerSpec(
    "analytics-dead-letters",
    subjects.DEAD_LETTERS,
    subjects.DEAD_LETTER.wildcard(),
    ConsumerPolicy(ordered=True),
)


def register(bus: Bus, projector: Projector) -> None:
    subscribe(bus, PROJECTOR, OneOf(*CONVERSATION_EVENTS), projector.when_conversation_event)
    subscribe(bus, DEAD_LETTERS, DeadLettered, projector.when_dead_lettered)
