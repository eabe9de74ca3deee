"""A realistic event history of one tenant, as the conversation and tools services publish it.

It covers every projection: answers at every tier (one from the cache), statuses out of order,
a tool round, a handoff with a human reply and a hand-back, a failed reply and a closed window,
an erased lead, bookings (one cancelled before its booking arrived), a payment confirmed twice,
and dead letters (one from a partitioned stream).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from taskpilot.contracts import Message
from taskpilot.contracts import conversation as ev
from taskpilot.contracts.dlq import DeadLettered
from taskpilot.contracts.inference import Citation, ToolCall, ToolResult
from taskpilot.contracts.tools import BookingCancelled, PaymentReceived, SlotBooked


@dataclass
class Conversation:
    tenant: str
    lead: str
    clock: Iterator[datetime]
    events: list[Message]
    sequence: int = 0
    id: str = field(init=False)

    def __post_init__(self) -> None:
        self.id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.tenant}/{self.lead}"))

    def add(self, cls: type[ev.ConversationEvent], **fields: Any) -> ev.ConversationEvent:
        self.sequence += 1
        event = cls(
            tenant_id=self.tenant,
            correlation_id=f"wamid.{self.lead}.{self.sequence}",
            conversation_id=self.id,
            lead=self.lead,
            sequence=self.sequence,
            occurred_at=next(self.clock),
            **fields,
        )
        self.events.append(event)
        return event

    def lead_writes(self, text: str, name: str | None = None) -> None:
        self.add(
            ev.LeadMessageReceived,
            wamid=f"wamid.in.{self.lead}.{self.sequence}",
            kind="text",
            text=text,
            lead_name=name,
        )

    def bot_answers(self, turn: str, text: str | None, tier: str = "L1", **reply: Any) -> None:
        self.add(ev.ReplyRequested, turn_id=turn, text="…")
        self.add(ev.ReplyComposed, turn_id=turn, text=text, tier=tier, **reply)

    def sent(self, turn: str) -> None:
        self.add(ev.ReplySent, turn_id=turn, wamid=f"wamid.out.{turn}")


def ticking(start: datetime, steps: list[float]) -> Iterator[datetime]:
    """Timestamps after ``start``, ``steps`` seconds apart (the last step repeats)."""
    moment = start
    i = 0
    while True:
        yield moment
        moment += timedelta(seconds=steps[min(i, len(steps) - 1)])
        i += 1


def history(tenant: str, start: datetime) -> list[Message]:
    events: list[Message] = []
    faq = [Citation(id="faq-1", kind="faq", title="What are your opening hours?", score=0.93)]

    a = Conversation(tenant, "34600000001", ticking(start, [0.2, 0.8, 1.0, 5, 5, 60]), events)
    a.lead_writes("what time do you open?", name="Ana")
    a.bot_answers("t-a1", "9 to 7.", source="faq", citations=faq, latency_ms=80.0)
    a.sent("t-a1")
    a.add(ev.ReplyStatusChanged, turn_id="t-a1", wamid="wamid.out.t-a1", status="read")
    a.add(ev.ReplyStatusChanged, turn_id="t-a1", wamid="wamid.out.t-a1", status="delivered")

    b = Conversation(tenant, "34600000002", ticking(start + timedelta(minutes=1), [1.0]), events)
    b.lead_writes("do you do colour?", name="Bea")
    b.bot_answers(
        "t-b1",
        "Yes, from 40 €.",
        tier="L2",
        source="model",
        model="gpt-x",
        prompt_tokens=900,
        completion_tokens=40,
        cost_usd=0.002,
        latency_ms=900.0,
    )
    b.sent("t-b1")
    b.lead_writes("and highlights?")
    b.bot_answers("t-b2", "Highlights from 60 €.", tier="L2", source="model", cache_hit=True)
    b.sent("t-b2")
    b.lead_writes("book me friday 10:00")
    b.add(ev.ReplyRequested, turn_id="t-b3", text="book me friday 10:00")
    call = ToolCall(id="c1", tool="book_slot", arguments={"start": "2026-11-06T10:00"})
    b.add(ev.ToolCallsRequested, turn_id="t-b3", round=0, calls=[call])
    b.add(ev.ToolResultRecorded, turn_id="t-b3", result=ToolResult(call_id="c1", result={}))
    b.add(
        ev.ReplyComposed,
        turn_id="t-b3",
        text="Booked!",
        tier="L3",
        source="model",
        model="gpt-big",
        prompt_tokens=2000,
        completion_tokens=30,
        cost_usd=0.011,
    )
    b.sent("t-b3")

    c = Conversation(tenant, "34600000003", ticking(start + timedelta(minutes=2), [2.0]), events)
    c.lead_writes("a discount for 12 people?", name="Carla")
    c.bot_answers("t-c1", "A colleague will answer.", tier="fallback", source="handoff")
    c.add(ev.ConversationHandedOff, reason="no grounded answer")
    c.sent("t-c1")
    c.lead_writes("hello??")
    c.add(ev.HumanReplied, turn_id="h-c1", text="Yes, 10% off.", agent="maria@shop")
    c.sent("h-c1")
    c.add(ev.BotResumed, agent="maria@shop")

    d = Conversation(tenant, "34600000004", ticking(start + timedelta(minutes=3), [1.0]), events)
    d.lead_writes("hi")
    d.bot_answers("t-d1", "Hi!", source="template")
    d.add(ev.ReplyFailed, turn_id="t-d1", reason="re-engagement", code=131047)
    d.add(ev.WindowClosed, turn_id="t-d1")
    d.lead_writes("spam spam", name=None)
    d.bot_answers("t-d2", None, tier="L0", source="silence")

    e = Conversation(tenant, "34600000005", ticking(start + timedelta(minutes=4), [1.0]), events)
    e.lead_writes("delete me")
    e.bot_answers("t-e1", "Done soon.", source="template")
    e.sent("t-e1")
    e.add(ev.LeadErased, requested_by="owner@shop", details={"events_deleted": 5})

    def tool_event(cls: type[Message], at: float, **fields: Any) -> None:
        events.append(
            cls(
                tenant_id=tenant,
                correlation_id="tools",
                occurred_at=start + timedelta(minutes=5, seconds=at),
                **fields,
            )
        )

    slot = {"timezone": "Europe/Madrid", "calendar": "caldav"}
    friday = datetime(2026, 11, 6, 9, tzinfo=start.tzinfo)
    tool_event(
        SlotBooked,
        1,
        conversation_id=b.id,
        booking_id="bk-1",
        start=friday,
        end=friday + timedelta(hours=1),
        **slot,
    )
    tool_event(BookingCancelled, 2, conversation_id=b.id, booking_id="bk-2")  # before its booking
    tool_event(
        SlotBooked,
        3,
        conversation_id=b.id,
        booking_id="bk-2",
        start=friday,
        end=friday + timedelta(hours=1),
        **slot,
    )
    tool_event(
        PaymentReceived,
        4,
        conversation_id=b.id,
        provider_event_id="evt_1",
        checkout_session_id="cs_1",
        amount_minor=4000,
        currency="eur",
    )
    tool_event(
        PaymentReceived,
        5,
        conversation_id=b.id,
        provider_event_id="evt_2",
        checkout_session_id="cs_1",
        amount_minor=4000,
        currency="eur",
    )
    tool_event(
        DeadLettered,
        6,
        origin="conversation-inbound-3",
        reason="max_deliveries",
        error="boom",
        original_subject=f"wa.inp.3.{tenant}.34600000009.message",
        stream="WHATSAPP_IN",
        stream_seq=7,
        attempts=5,
        headers={"Tenant-Id": tenant, "Nats-Msg-Id": "wamid.x"},
        payload='{"type": "WhatsAppMessageReceived"}',
    )
    tool_event(
        DeadLettered,
        7,
        origin="ingest.webhook",
        reason="malformed_webhook",
        error="Expecting value",
        payload="{not json",
    )
    return events


def erased_lead_events(events: list[Message]) -> list[Message]:
    """What the conversation service purges from the stream when it erases lead ...05."""
    return [
        e
        for e in events
        if isinstance(e, ev.ConversationEvent)
        and e.lead == "34600000005"
        and not isinstance(e, ev.LeadErased)
    ]
