"""Publish after commit: relay the event store's notification log to JetStream.

The relay reads notifications after its tracked position, turns each stored domain event into
public events and commands (:func:`outgoing`), publishes them with ``Nats-Msg-Id`` derived from
the event's (aggregate id, version), then advances the position. A crash between commit and
publish re-publishes on restart; the ids make JetStream (and, outside its window, the
consumers' own idempotency, since event ids are deterministic too) drop the duplicates.
One relay is active at a time: it holds a PostgreSQL advisory lock.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter, Gauge
from psycopg_pool import AsyncConnectionPool

from taskpilot.contracts import Message
from taskpilot.contracts import conversation as public
from taskpilot.contracts.inference import GenerateReply, Turn
from taskpilot.contracts.whatsapp import SendWhatsAppMessage
from taskpilot.conversation.service import Conversations
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.db import migrate

log = logging.getLogger(__name__)

RELAYED = Counter("taskpilot_relay_messages_total", "Messages relayed to the bus")
POSITION = Gauge("taskpilot_relay_position", "Last relayed notification id")

SCHEMA = """
CREATE TABLE IF NOT EXISTS relay_positions (
    name      text PRIMARY KEY,
    position  bigint NOT NULL
);
"""

_NS = uuid.UUID("0b5c0e0e-4f0a-4d8a-8d0b-3f0e7c2d9a11")


def _id(msg_id: str) -> uuid.UUID:
    return uuid.uuid5(_NS, msg_id)


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
    name = type(event).__name__

    def emit(cls: type[Message], suffix: str, **fields: Any) -> tuple[Message, str]:
        msg_id = f"{base}:{suffix}"
        return cls(event_id=_id(msg_id), **fields), msg_id

    if name == "MessageReceived":
        yield emit(
            public.LeadMessageReceived,
            "event",
            **common,
            wamid=event.wamid,
            kind=event.kind,
            text=event.text,
            lead_name=event.lead_name,
        )
    elif name == "ReplyRequested":
        yield emit(public.ReplyRequested, "event", **common, turn_id=event.turn_id, text=event.text)
        yield emit(
            GenerateReply,
            "command",
            **{k: common[k] for k in ("tenant_id", "correlation_id", "conversation_id", "lead")},
            causation_id=str(_id(f"{base}:event")),
            turn_id=event.turn_id,
            text=event.text,
            history=[Turn.model_validate(t) for t in event.history],
        )
    elif name == "ReplyComposed":
        reply = event.reply
        yield emit(
            public.ReplyComposed,
            "event",
            **common,
            turn_id=event.turn_id,
            **{k: v for k, v in reply.items() if k not in ("handoff", "handoff_reason")},
        )
        if reply.get("text"):
            yield emit(
                SendWhatsAppMessage,
                "command",
                **{k: common[k] for k in ("tenant_id", "correlation_id", "conversation_id")},
                causation_id=str(_id(f"{base}:event")),
                phone_number_id=env["phone_number_id"],
                to=env["lead"],
                text=reply["text"],
                reference=event.turn_id,
            )
    elif name == "ReplySent":
        yield emit(public.ReplySent, "event", **common, turn_id=event.turn_id, wamid=event.wamid)
    elif name == "ReplyFailed":
        yield emit(
            public.ReplyFailed,
            "event",
            **common,
            turn_id=event.turn_id,
            reason=event.reason,
            code=event.code,
        )
    elif name == "HandedOff":
        yield emit(public.ConversationHandedOff, "event", **common, reason=event.reason)


class Relay:
    def __init__(
        self,
        app: Conversations,
        bus: Bus,
        pool: AsyncConnectionPool,
        name: str = "conversation",
        batch: int = 200,
        idle_poll_s: float = 0.25,
    ):
        self._app = app
        self._bus = bus
        self._pool = pool
        self._name = name
        self._batch = batch
        self._idle = idle_poll_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Called after a local commit so the relay does not wait for its poll."""
        self._wake.set()

    async def run(self) -> None:
        await migrate(self._pool, "taskpilot.relay", SCHEMA)
        async with self._pool.connection() as lock_conn:
            await lock_conn.set_autocommit(True)
            while not await self._try_lock(lock_conn):
                await asyncio.sleep(1.0)  # another replica relays; take over if it dies
            log.info("relay %s active", self._name)
            position = await self._position()
            while True:
                position = await self.relay_once(position)

    async def relay_once(self, position: int) -> int:
        notifications = await asyncio.to_thread(
            self._app.recorder.select_notifications, position + 1, self._batch
        )
        if not notifications:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._idle)
            except TimeoutError:
                pass
            return position
        publishes = []
        for notification in notifications:
            event = self._app.mapper.to_domain_event(notification)
            for message, msg_id in outgoing(event):
                publishes.append(self._bus.publish(message, msg_id=msg_id))
        # One connection keeps publish order; gather pipelines the acks.
        await asyncio.gather(*publishes)
        RELAYED.inc(len(publishes))
        position = notifications[-1].id
        await self._save(position)
        POSITION.set(position)
        return position

    async def _try_lock(self, conn: Any) -> bool:
        cur = await conn.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s))", (f"relay:{self._name}",)
        )
        row = await cur.fetchone()
        return bool(row and row[0])

    async def _position(self) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT position FROM relay_positions WHERE name = %s", (self._name,)
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _save(self, position: int) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                """INSERT INTO relay_positions (name, position) VALUES (%s, %s)
                   ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position""",
                (self._name, position),
            )
