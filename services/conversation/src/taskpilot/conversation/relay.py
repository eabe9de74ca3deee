"""Publish after commit: relay the event store's notification log to JetStream.

The relay reads notifications after its tracked position, turns each stored domain event into
public events and commands (:func:`outgoing`) and timer changes (:func:`timers_for`), publishes
with ``Nats-Msg-Id`` derived from the event's (aggregate id, version), then advances the
position. A crash between commit and publish re-publishes on restart; the ids make JetStream
(and, outside its window, the consumers, since event ids are deterministic too) drop the
duplicates. One relay is active at a time: it holds a PostgreSQL advisory lock.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import context as otel_context
from prometheus_client import Counter, Gauge
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from taskpilot.contracts import Message
from taskpilot.contracts import conversation as public
from taskpilot.contracts.inference import GenerateReply, ToolCall, ToolResult, Turn
from taskpilot.contracts.tools import ExecuteToolCall
from taskpilot.contracts.whatsapp import MarkMessageRead, SendWhatsAppMessage, TemplateMessage
from taskpilot.conversation.adapters import Timers
from taskpilot.conversation.service import Conversations
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.telemetry import context_from_headers

log = logging.getLogger(__name__)

RELAYED = Counter("taskpilot_relay_messages_total", "Messages relayed to the bus")
POSITION = Gauge("taskpilot_relay_position", "Last relayed notification id")
LAG = Gauge("taskpilot_relay_lag", "Stored notifications the relay has not published yet")
HELD = Gauge("taskpilot_relay_backpressure", "1 while new lead messages wait for the relay")

_NS = uuid.UUID("0b5c0e0e-4f0a-4d8a-8d0b-3f0e7c2d9a11")


def _id(msg_id: str) -> uuid.UUID:
    return uuid.uuid5(_NS, msg_id)


@dataclass(frozen=True)
class TimerChange:
    kind: str  # "turn" (deadline of an open turn) or "burst" (end of a lead's burst)
    key: str
    due: datetime | None  # None: cancel


def timers_for(event: Any, turn_deadline: timedelta, burst_window: timedelta) -> list[TimerChange]:
    """The timers a stored event starts or cancels (pure; applied by the relay)."""
    name = type(event).__name__
    if name == "ReplyRequested":
        deadline = TimerChange("turn", event.turn_id, event.timestamp + turn_deadline)
        # Only a new turn took the pending messages; a tool round leaves a new burst running.
        return [TimerChange("burst", "", None), deadline] if event.round == 0 else [deadline]
    if name == "MessageReceived" and event.awaits_reply and burst_window:
        return [TimerChange("burst", "", event.timestamp + burst_window)]
    if name in ("ReplyComposed", "TurnSuperseded"):
        return [TimerChange("turn", event.turn_id, None)]
    if name == "HandedOff":
        return [TimerChange("burst", "", None)]
    return []


def outgoing(event: Any) -> Iterator[tuple[Message, str]]:
    """The public messages a stored domain event stands for, with their Msg-Ids."""
    env: dict[str, Any] | None = getattr(event, "env", None)
    if env is None:  # Started: nothing public happened yet
        return
    base = f"{event.originator_id}:{event.originator_version}"
    common = {
        "tenant_id": env["tenant_id"],
        "lead": env["lead"],
        "correlation_id": env["correlation_id"],
        "causation_id": env["causation_id"],
        "conversation_id": str(event.originator_id),
        "sequence": event.originator_version,
        "occurred_at": event.timestamp,
    }
    routing = {k: common[k] for k in ("tenant_id", "correlation_id", "conversation_id")}
    cause = str(_id(f"{base}:event"))

    def emit(cls: type[Message], suffix: str, **fields: Any) -> tuple[Message, str]:
        msg_id = f"{base}:{suffix}"
        return cls(event_id=_id(msg_id), **fields), msg_id

    def send(turn_id: str, **body: Any) -> tuple[Message, str]:
        return emit(
            SendWhatsAppMessage,
            "command",
            **routing,
            causation_id=cause,
            phone_number_id=env["phone_number_id"],
            to=env["lead"],
            reference=turn_id,
            **body,
        )

    match type(event).__name__:
        case "MessageReceived":
            yield emit(
                public.LeadMessageReceived,
                "event",
                **common,
                wamid=event.wamid,
                kind=event.kind,
                text=event.text,
                lead_name=event.lead_name,
            )
        case "ReplyRequested":
            yield emit(
                public.ReplyRequested,
                "event",
                **common,
                turn_id=event.turn_id,
                text=event.text,
                round=event.round,
            )
            if event.round == 0:  # the lead sees the blue ticks and "typing…"
                yield emit(
                    MarkMessageRead,
                    "mark_read",
                    **routing,
                    causation_id=cause,
                    phone_number_id=env["phone_number_id"],
                    wamid=event.turn_id,
                )
            yield emit(
                GenerateReply,
                "command",
                **routing,
                lead=env["lead"],
                causation_id=cause,
                turn_id=event.turn_id,
                text=event.text,
                round=event.round,
                history=[Turn.model_validate(t) for t in event.history],
                tool_results=[ToolResult.model_validate(r) for r in event.tool_results],
            )
        case "TurnSuperseded":
            yield emit(public.TurnSuperseded, "event", **common, turn_id=event.turn_id)
        case "ToolCallsRequested":
            calls = [ToolCall.model_validate(c) for c in event.calls]
            yield emit(
                public.ToolCallsRequested,
                "event",
                **common,
                turn_id=event.turn_id,
                round=event.round,
                calls=calls,
            )
            for call in event.calls:
                yield emit(
                    ExecuteToolCall,
                    f"tool:{call['key']}",
                    **routing,
                    causation_id=cause,
                    tool_call_id=call["key"],
                    tool=call["tool"],
                    arguments=call["arguments"],
                )
        case "ToolCallCompleted":
            result = ToolResult(call_id=event.key, result=event.result, error=event.error)
            yield emit(
                public.ToolResultRecorded, "event", **common, turn_id=event.turn_id, result=result
            )
        case "TurnTimedOut":
            yield emit(
                public.TurnTimedOut, "event", **common, turn_id=event.turn_id, round=event.round
            )
        case "ReplyComposed":
            reply = event.reply
            yield emit(
                public.ReplyComposed,
                "event",
                **common,
                turn_id=event.turn_id,
                **{k: v for k, v in reply.items() if k in _COMPOSED_FIELDS},
            )
            if reply.get("text") and not reply.get("withheld"):
                yield send(event.turn_id, text=reply["text"])
        case "TemplateSent":
            template = TemplateMessage.model_validate(event.template)
            yield emit(
                public.TemplateSent,
                "event",
                **common,
                turn_id=event.turn_id,
                template=template.name,
                language=template.language,
            )
            yield send(event.turn_id, template=template)
        case "TurnFinished":
            yield emit(
                public.TurnFinished,
                "event",
                **common,
                turn_id=event.turn_id,
                lead_text=event.lead_text,
                reply_text=event.reply_text,
                by=event.by,
            )
        case "ReplySent":
            yield emit(
                public.ReplySent, "event", **common, turn_id=event.turn_id, wamid=event.wamid
            )
        case "ReplyStatusChanged":
            yield emit(
                public.ReplyStatusChanged,
                "event",
                **common,
                turn_id=event.turn_id,
                wamid=event.wamid,
                status=event.status,
            )
        case "ReplyFailed":
            yield emit(
                public.ReplyFailed,
                "event",
                **common,
                turn_id=event.turn_id,
                reason=event.reason,
                code=event.code,
            )
        case "WindowClosed":
            yield emit(public.WindowClosed, "event", **common, turn_id=event.turn_id)
        case "HandedOff":
            yield emit(
                public.ConversationHandedOff, "event", **common, reason=event.reason, by=event.by
            )
        case "HumanReplied":
            yield emit(
                public.HumanReplied,
                "event",
                **common,
                turn_id=event.turn_id,
                text=event.text,
                agent=event.agent,
            )
            yield send(event.turn_id, text=event.text)
        case "PaymentConfirmed":
            yield emit(
                public.PaymentConfirmed,
                "event",
                **common,
                payment_id=event.payment_id,
                amount_minor=event.amount_minor,
                currency=event.currency,
            )
        case "BotResumed":
            yield emit(public.BotResumed, "event", **common, agent=event.agent)


_COMPOSED_FIELDS = set(public.ReplyComposed.model_fields) - set(
    public.ConversationEvent.model_fields
)


class Relay:
    def __init__(
        self,
        app: Conversations,
        bus: Bus,
        pool: AsyncConnectionPool,
        timers: Timers,
        *,
        turn_deadline: timedelta,
        burst_window: timedelta,
        name: str = "conversation",
        batch: int = 200,
        idle_poll_s: float = 0.25,
    ):
        self._app = app
        self._bus = bus
        self._pool = pool
        self._timers = timers
        self._deadline = turn_deadline
        self._burst = burst_window
        self._name = name
        self._batch = batch
        self._idle = idle_poll_s
        self._wake = asyncio.Event()
        self.active = asyncio.Event()

    def wake(self) -> None:
        """Called after a local commit so the relay does not wait for its poll."""
        self._wake.set()

    async def run(self) -> None:
        async with self._pool.connection() as lock_conn:
            await lock_conn.set_autocommit(True)
            while not await self._try_lock(lock_conn):
                await asyncio.sleep(1.0)  # another replica relays; take over if it dies
            log.info("relay %s active", self._name)
            self.active.set()
            position = await self._timers.position(self._name)
            while True:
                position = await self.relay_once(position)

    async def relay_once(self, position: int) -> int:
        self._wake.clear()  # before the read: a commit landing during it still wakes us
        notifications = await asyncio.to_thread(
            self._app.recorder.select_notifications, position + 1, self._batch
        )
        if not notifications:
            try:
                await asyncio.wait_for(self._wake.wait(), self._idle)
            except TimeoutError:
                pass
            return position
        publishes: list[asyncio.Future[bool]] = []
        changes = []
        for notification in notifications:
            event = self._app.mapper.to_domain_event(notification)
            # Publish in the trace of the handler that decided: one trace per lead message.
            token = otel_context.attach(
                context_from_headers(getattr(event, "env", {}).get("trace"))
            )
            try:
                for message, msg_id in outgoing(event):
                    publishes.append(
                        asyncio.ensure_future(self._bus.publish(message, msg_id=msg_id))
                    )
            finally:
                otel_context.detach(token)
            changes += [
                (event.originator_id, c) for c in timers_for(event, self._deadline, self._burst)
            ]
        # One connection keeps publish order; gather pipelines the acks.
        await asyncio.gather(*publishes)
        RELAYED.inc(len(publishes))
        position = notifications[-1].id
        await self._timers.apply(changes, self._name, position)
        POSITION.set(position)
        return position

    async def _try_lock(self, conn: Any) -> bool:
        cur = await conn.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s))", (f"relay:{self._name}",)
        )
        row = await cur.fetchone()
        return bool(row and row[0])


class Backpressure:
    """New lead messages wait while the relay is far behind the store.

    The relay publishes in commit order, so whatever commits while it lags waits behind the
    lag: a flood committed ahead of a quiet tenant's message delays that tenant's reply by the
    whole flood. Holding new inbound messages back while more than ``max_lag`` notifications
    are unpublished keeps the backlog in JetStream instead, where the consumers' fair queue
    orders it by tenant (ADR 7). Every replica samples the same two numbers (the store's last
    notification id and the active relay's position), so it works whichever replica relays.
    ``max_lag`` 0 turns it off.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        events_table: str,
        relay: str = "conversation",
        *,
        max_lag: int = 200,
        poll_s: float = 0.05,
    ):
        self._pool = pool
        self._query = sql.SQL(
            "SELECT (SELECT coalesce(max(notification_id), 0) FROM {events}),"
            " (SELECT coalesce(max(position), 0) FROM relay_positions WHERE name = %s)"
        ).format(events=sql.Identifier(events_table))
        self._relay = relay
        self.max_lag = max_lag
        self._poll = poll_s
        self._open = asyncio.Event()
        self._open.set()

    async def lag(self) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(self._query, (self._relay,))
            row = await cur.fetchone()
        return max(0, int(row[0]) - int(row[1])) if row else 0

    async def run(self) -> None:
        if not self.max_lag:
            return
        while True:
            try:
                lag = await self.lag()
            except Exception as exc:  # the database away for a moment: nothing to hold for
                log.info("relay lag unknown: %r", exc)
                lag = 0
            LAG.set(lag)
            if lag > self.max_lag and self._open.is_set():
                log.info("relay %d behind: new lead messages wait", lag)
                self._open.clear()
            elif lag <= self.max_lag and not self._open.is_set():
                self._open.set()
            HELD.set(0 if self._open.is_set() else 1)
            await asyncio.sleep(self._poll)

    @property
    def holding(self) -> bool:
        return not self._open.is_set()

    async def wait(self) -> None:
        """Return once the relay is within ``max_lag`` (at once when it is)."""
        await self._open.wait()
