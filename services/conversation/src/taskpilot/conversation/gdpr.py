"""GDPR: export everything held about a lead, and erase it everywhere this service reaches.

Erasure deletes the conversation's stored events and snapshots, its timers, and its messages
in the WHATSAPP_IN and CONVERSATION streams (their subjects carry the lead), records an audit
row (no personal data: a hash of the lead), then publishes ``LeadErased`` so read models and
the knowledge service's memory delete theirs. The lead's memory in knowledge is erased first
(nothing is erased when it cannot be) and again at the end, for a turn that was being
remembered meanwhile (:mod:`taskpilot.conversation.memory` checks the audit rows too).
Commands and results in INFERENCE, TOOLS and WHATSAPP_OUT carry message text too; those
streams keep messages for at most 7 days.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from psycopg_pool import AsyncConnectionPool

from taskpilot.contracts import subjects
from taskpilot.contracts.conversation import LeadErased
from taskpilot.contracts.knowledge import EraseLeadMemory, MemoryResult
from taskpilot.conversation.adapters import Timers, erase_stored_events
from taskpilot.conversation.domain import conversation_id
from taskpilot.conversation.service import ConversationNotFoundError, Conversations
from taskpilot.runtime.bus import Bus, RequestError
from taskpilot.runtime.db import migrate


class ArchiveEraser(Protocol):
    async def erase(self, tenant_id: str, conv: uuid.UUID) -> int:
        """Delete the conversation's archive object and catalog entry; events deleted."""
        ...


class ErasureIncompleteError(Exception):
    """A store that holds the lead's data could not be reached; retry the erasure."""


AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS gdpr_erasures (
    id               uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    conversation_id  uuid NOT NULL,
    lead_sha256      text NOT NULL,
    requested_by     text NOT NULL,
    events_deleted   integer NOT NULL,
    messages_purged  integer NOT NULL,
    erased_at        timestamptz NOT NULL
);
"""


class Gdpr:
    def __init__(
        self,
        app: Conversations,
        bus: Bus,
        pool: AsyncConnectionPool,
        timers: Timers,
        database_url: str,
    ):
        self._app = app
        self._bus = bus
        self._pool = pool
        self._timers = timers
        self._database_url = database_url
        self.archives: ArchiveEraser | None = None
        """The lifecycle's archive, when the service has one: erasure reaches it too."""

    async def ensure_schema(self) -> None:
        await migrate(self._pool, "taskpilot.conversation.gdpr", AUDIT_SCHEMA)

    async def export(self, tenant_id: str, lead: str) -> dict[str, Any]:
        conv = conversation_id(tenant_id, lead)
        events = await asyncio.to_thread(self._app.history_of, tenant_id, conv)
        return {
            "tenant_id": tenant_id,
            "lead": lead,
            "conversation_id": str(conv),
            "exported_at": datetime.now(UTC).isoformat(),
            "events": events,
        }

    async def erase(self, tenant_id: str, lead: str, requested_by: str) -> dict[str, Any]:
        conv = conversation_id(tenant_id, lead)
        # Memory first: if knowledge cannot be reached, nothing is erased yet and the whole
        # request can be retried, rather than leaving memories behind a finished erasure.
        memories = await self._erase_memory(tenant_id, lead, requested_by)
        try:
            await asyncio.to_thread(self._app.get, tenant_id, conv)
        except ConversationNotFoundError:
            deleted = 0  # already erased (or never existed): purge and announce again
        else:
            deleted = await asyncio.to_thread(
                erase_stored_events, self._app, self._database_url, conv
            )
        await self._timers.forget(conv)
        if self.archives is not None:
            deleted += await self.archives.erase(tenant_id, conv)
        purged = await self._purge(tenant_id, lead)
        erasure = uuid.uuid4()
        erased_at = datetime.now(UTC)
        async with self._pool.connection() as db:
            await db.execute(
                "INSERT INTO gdpr_erasures VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    erasure,
                    tenant_id,
                    conv,
                    hashlib.sha256(lead.encode()).hexdigest(),
                    requested_by,
                    deleted,
                    purged,
                    erased_at,
                ),
            )
        # A turn remembered while this ran, seen before the audit row was: gone now.
        memories += await self._erase_memory(tenant_id, lead, requested_by)
        await self._bus.publish(
            LeadErased(
                tenant_id=tenant_id,
                correlation_id=f"erasure:{erasure}",
                lead=lead,
                conversation_id=str(conv),
                sequence=0,
                requested_by=requested_by,
                details={"events_deleted": deleted, "messages_purged": purged},
            ),
            msg_id=f"erasure:{erasure}",
        )
        return {
            "conversation_id": str(conv),
            "events_deleted": deleted,
            "messages_purged": purged,
            "memories_erased": memories,
            "erasure_id": str(erasure),
        }

    async def erased_since(self, conversation: uuid.UUID, at: datetime) -> bool:
        """Whether the conversation's lead was erased at or after ``at`` (a conversation id
        names one tenant's lead)."""
        async with self._pool.connection() as db:
            cur = await db.execute(
                "SELECT 1 FROM gdpr_erasures WHERE conversation_id = %s AND erased_at >= %s",
                (conversation, at),
            )
            return await cur.fetchone() is not None

    async def _erase_memory(self, tenant_id: str, lead: str, requested_by: str) -> int:
        request = EraseLeadMemory(
            tenant_id=tenant_id, correlation_id=f"erasure-request:{requested_by}", lead=lead
        )
        try:
            result = await self._bus.request(request, MemoryResult, timeout=10)
        except RequestError as exc:
            raise ErasureIncompleteError(f"knowledge memory not reachable: {exc}") from exc
        if result.error:
            raise ErasureIncompleteError(f"knowledge memory refused: {result.error}")
        return result.erased

    async def _purge(self, tenant_id: str, lead: str) -> int:
        partitioning = subjects.WHATSAPP_IN.partitioning
        assert partitioning is not None
        filters = {
            subjects.WHATSAPP_IN.name: f"{partitioning.stored_prefix}.*.{tenant_id}.{lead}.>",
            subjects.CONVERSATION.name: subjects.CONVERSATION_EVENT.wildcard(
                tenant=tenant_id, lead=lead
            ),
        }
        purged = 0
        for stream, subject in filters.items():
            purged += await stored_count(self._bus, stream, subject)
            await self._bus.js.purge_stream(stream, subject=subject)
        return purged


async def stored_count(bus: Bus, stream: str, subject: str) -> int:
    """How many messages ``stream`` holds on subjects matching ``subject``."""
    info = await bus.js.stream_info(stream, subjects_filter=subject)
    return sum((info.state.subjects or {}).values())
