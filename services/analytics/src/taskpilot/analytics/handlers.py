"""Every NATS subscription of analytics, in one place.

The same sources feed the live projector and a rebuild (:mod:`taskpilot.analytics.rebuild`),
so the read models are a function of these streams alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskpilot.analytics.service import Projector
from taskpilot.contracts import subjects
from taskpilot.contracts.catalogue import OneOf
from taskpilot.contracts.conversation import CONVERSATION_EVENTS
from taskpilot.contracts.dlq import DeadLettered
from taskpilot.contracts.tools import BookingCancelled, PaymentReceived, SlotBooked
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import ConsumerPolicy, ConsumerSpec, subscribe


@dataclass(frozen=True)
class Source:
    """One stream the read models are built from, and how its messages are read."""

    spec: ConsumerSpec
    parser: OneOf


# Ordered: a conversation's events in relay order (a reply's status after the reply).
SOURCES = (
    Source(
        ConsumerSpec(
            "analytics-projector",
            subjects.CONVERSATION,
            subjects.CONVERSATION_EVENT.wildcard(),
            ConsumerPolicy(ordered=True),
        ),
        OneOf(*CONVERSATION_EVENTS),
    ),
    Source(
        ConsumerSpec(
            "analytics-tools",
            subjects.TOOLS,
            subjects.TOOLS.subjects[0],  # bookings and payments; other tool messages skipped
            ConsumerPolicy(ordered=True),
        ),
        OneOf(SlotBooked, BookingCancelled, PaymentReceived),
    ),
    Source(
        ConsumerSpec(
            "analytics-dead-letters",
            subjects.DEAD_LETTERS,
            subjects.DEAD_LETTER.wildcard(),
            ConsumerPolicy(ordered=True),
        ),
        OneOf(DeadLettered),
    ),
)


def register(bus: Bus, projector: Projector) -> None:
    for source in SOURCES:
        subscribe(bus, source.spec, source.parser, projector.when_event)
