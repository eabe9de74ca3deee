"""JetStream reads of the tools service: the dead-letter archive, the conversation history of
a week. (The work-queue stream of slow jobs, TOOL_JOBS, is provisioned with every other stream
by the runtime at start-up.)"""

from __future__ import annotations

from datetime import datetime

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError as NatsNotFoundError

from taskpilot.contracts import Message, subjects
from taskpilot.contracts.catalogue import OneOf
from taskpilot.contracts.conversation import CONVERSATION_EVENTS
from taskpilot.contracts.dlq import DeadLettered
from taskpilot.tools.adapters.calendars import utc


class DeadLetterArchive:
    """Reads the DEAD_LETTERS stream: one letter by sequence, or a tenant's letters of one
    consumer (the subject ``dlq.{tenant}.{origin}`` holds exactly those)."""

    def __init__(self, js: JetStreamContext):
        self._js = js

    async def letter(self, seq: int) -> DeadLettered | None:
        try:
            raw = await self._js.get_msg(subjects.DEAD_LETTERS.name, seq)
        except NatsNotFoundError:
            return None
        return DeadLettered.model_validate_json(raw.data or b"")

    async def letters(
        self, tenant_id: str, origin: str, limit: int
    ) -> list[tuple[int, DeadLettered]]:
        subject = subjects.DEAD_LETTER.subject(tenant=tenant_id, origin=origin)
        found: list[tuple[int, DeadLettered]] = []
        sub = await self._js.subscribe(subject, ordered_consumer=True)
        try:
            while len(found) < limit:
                try:
                    msg = await sub.next_msg(timeout=0.5)
                except NatsTimeoutError:
                    break
                found.append(
                    (msg.metadata.sequence.stream, DeadLettered.model_validate_json(msg.data))
                )
                if msg.metadata.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
        return found


class ConversationHistory:
    """Reads a tenant's public conversation events of a time window from the CONVERSATION
    stream (its own facts, published for every reader), oldest first, in pages."""

    def __init__(self, js: JetStreamContext, page: int = 500):
        self._js = js
        self._page = page

    async def events(self, tenant_id: str, start: datetime, end: datetime) -> list[Message]:
        parser = OneOf(*CONVERSATION_EVENTS)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=utc(start),
        )
        found: list[Message] = []
        sub = await self._js.subscribe(
            subjects.CONVERSATION_EVENT.wildcard(tenant=tenant_id),
            ordered_consumer=True,
            config=config,
        )
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=0.5)
                except NatsTimeoutError:
                    break
                if msg.metadata.timestamp >= utc(end):
                    break
                event = parser.model_validate_json(msg.data)
                if event is not None:
                    found.append(event)
                if msg.metadata.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
        return found
