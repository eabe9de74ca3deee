"""Data lifecycle use cases: archive idle conversations, restore them, apply retention.

Archive job, per tenant (resumable; every step is recorded before the next one starts):

1. catch the catalog up with the notification log (who is where, last activity);
2. open the tenant's unfinished job, or a new one selecting every hot conversation idle
   longer than the tenant's ``archive_after_days`` (items ``selected``);
3. per batch: write each item's events to the archive, read the object back and check it
   (``written``); then, in one transaction under the event store's lock, delete the events
   of every item still at the written version and mark it ``archived`` in the catalog;
4. announce ``ConversationArchived`` for archived items not yet announced (idempotent ids).

A conversation held by a human, with an open turn or pending messages, or not yet relayed, is
``skipped``. Killed anywhere, a rerun resumes the same job: ``selected`` items are written
again (same bytes), ``written`` ones are verified again, then moved.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from eventsourcing.persistence import StoredEvent

from taskpilot.contracts.conversation import (
    TENANT_LEAD,
    ConversationArchived,
    ConversationContentRedacted,
    ConversationRestored,
    RetentionApplied,
)
from taskpilot.contracts.knowledge import EraseLeadMemory, MemoryResult
from taskpilot.conversation import archive as fmt
from taskpilot.conversation.archive import ArchiveCorruptError, ArchiveStore, StoredRow
from taskpilot.conversation.domain import Conversation, conversation_id
from taskpilot.conversation.lifecycle_store import LifecycleStore
from taskpilot.conversation.redaction import redact_state
from taskpilot.conversation.service import Conversations
from taskpilot.runtime.bus import Bus
from taskpilot.tenancy import TenantDirectory

log = logging.getLogger(__name__)

CATALOG = "catalog"
Progress = Callable[[str], None]
Step = Callable[[str], Awaitable[None]]


class ArchiveMissingError(Exception):
    """The catalog says archived but the object store does not have the object."""


@dataclass
class ArchiveReport:
    job_id: uuid.UUID
    resumed: bool
    selected: int = 0
    archived: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class RetentionReport:
    run_id: uuid.UUID | None
    conversations: int = 0
    events: int = 0
    archives: int = 0
    memories: int = 0


class MemoryNotForgottenError(Exception):
    """Knowledge refused to forget a lead's old turns; the run fails and the next one retries."""


async def _no_step(step: str) -> None:
    return None


class Lifecycle:
    def __init__(
        self,
        app: Conversations,
        store: LifecycleStore,
        archive: ArchiveStore,
        tenants: TenantDirectory,
        bus: Bus | None,
        *,
        archive_after_days: int = 90,
        batch: int = 100,
        relay: str = "conversation",
        progress: Progress = lambda line: None,
        step: Step = _no_step,
    ):
        self._app = app
        self._store = store
        self._archive = archive
        self._tenants = tenants
        self._bus = bus
        self._days = archive_after_days
        self._batch = batch
        self._relay = relay
        self._progress = progress
        self._step = step  # tests inject a crash between steps here

    @property
    def store(self) -> LifecycleStore:
        return self._store

    # -- catalog ------------------------------------------------------------------------

    async def catch_up(self) -> int:
        """Read the notification log past the catalog's position; returns events read."""
        position = await self._store.position(CATALOG)
        total = 0
        while rows := await self._store.notifications(position, 1000):
            entries = []
            for notification_id, originator, version, topic, state in rows:
                event = self._decode(originator, version, topic, state)
                tenant, lead = _owner(event)
                entries.append((originator, tenant, lead, event.timestamp, notification_id))
            position = rows[-1][0]
            await self._store.record_activity(entries, CATALOG, position)
            total += len(rows)
        return total

    def _decode(self, originator: uuid.UUID, version: int, topic: str, state: bytes) -> Any:
        stored = StoredEvent(originator, version, topic, bytes(state))
        return self._app.mapper.to_domain_event(stored)

    # -- archive ------------------------------------------------------------------------

    async def archive(self, tenant_id: str, now: datetime | None = None) -> ArchiveReport:
        now = now or datetime.now(UTC)
        await self.catch_up()
        profile = (await self._tenants.get(tenant_id)).profile
        cutoff = now - timedelta(days=profile.archive_after_days or self._days)
        job, resumed = await self._store.open_job(tenant_id, cutoff)
        report = ArchiveReport(job, resumed)
        if not resumed:
            idle = await self._store.entries(tenant_id, "hot", cutoff)
            await self._store.select_items(job, [e.conversation_id for e in idle])
            await self._step("selected")
        await self._verify_written(job)
        await self._move_out(job)
        todo = await self._store.items(job, "selected")
        self._progress(
            f"{tenant_id}: job {job} {'resumed' if resumed else 'started'}, {len(todo)} to archive"
        )
        for start in range(0, len(todo), self._batch):
            batch = todo[start : start + self._batch]
            await asyncio.gather(*(self._write(job, c) for c in batch))
            await self._step("written")
            await self._move_out(job)
            states = await self._store.item_states(job)
            self._progress(
                f"{tenant_id}: {states.get('archived', 0)} archived, "
                f"{states.get('skipped', 0)} skipped, "
                f"{len(todo) - start - len(batch)} to go"
            )
        await self._announce(job)
        await self._write_manifest(tenant_id, job)
        await self._store.finish_job(job)
        states = await self._store.item_states(job)
        report.selected = sum(states.values())
        report.archived = states.get("archived", 0)
        report.skipped = await self._store.skip_reasons(job)
        return report

    async def _write(self, job: uuid.UUID, conv: uuid.UUID) -> None:
        entry = await self._store.entry(conv)
        reason = await self._reason_to_keep(entry)
        if reason or entry is None:
            await self._store.skip(job, conv, reason or "unknown")
            return
        rows = [
            StoredRow(v, n, t, s, self._decode(conv, v, t, s).timestamp)
            for v, n, t, s in await self._store.stored_rows(conv)
        ]
        if not rows:
            await self._store.skip(job, conv, "no stored events")
            return
        data = fmt.encode(entry.tenant_id, entry.lead, str(conv), rows)
        key = fmt.object_key(entry.tenant_id, conv)
        await self._archive.put(key, data)
        digest = fmt.sha256(data)
        archived = await self._read_back(key, digest)
        await self._store.written(
            job, conv, rows[-1].version, key, digest, len(rows), archived.manifest["counts"]
        )

    async def _reason_to_keep(self, entry: Any) -> str | None:
        if entry is None or entry.location != "hot":
            return "not in the hot store"
        if entry.last_notification_id > await self._store.relayed_position(self._relay):
            return "not relayed yet"
        conversation: Conversation = await asyncio.to_thread(
            self._app.repository.get, entry.conversation_id
        )
        if conversation.mode == "human":
            return "held by a human"
        if conversation.open_turns or conversation.pending:
            return "active"
        return None

    async def _read_back(self, key: str, digest: str) -> fmt.Archived:
        data = await self._archive.get(key)
        if data is None:
            raise ArchiveMissingError(key)
        if fmt.sha256(data) != digest:
            raise ArchiveCorruptError(f"{key}: checksum differs from what was written")
        return fmt.decode(data)

    async def _verify_written(self, job: uuid.UUID) -> None:
        """Resume: a ``written`` item whose object is gone or differs is written again."""
        for item in await self._store.written_items(job):
            try:
                await self._read_back(item["archive_key"], item["sha256"])
            except (ArchiveMissingError, ArchiveCorruptError):
                await self._write(job, item["conversation_id"])

    async def _move_out(self, job: uuid.UUID) -> None:
        written = await self._store.written_items(job)
        if written:
            await self._store.move_out(job, written)

    async def _announce(self, job: uuid.UUID) -> None:
        if self._bus is None:
            return  # announced by the next run that has a bus
        items = await self._store.unannounced(job)
        for item in items:
            conv = item["conversation_id"]
            await self._bus.publish(
                ConversationArchived(
                    tenant_id=item["tenant_id"],
                    correlation_id=f"archive:{job}",
                    conversation_id=str(conv),
                    lead=item["lead"],
                    sequence=item["version"],
                    archive_key=item["key"],
                    sha256=item["sha256"],
                    events=item["events"],
                    counts=item["counts"] or {},
                ),
                msg_id=f"archived:{conv}:{item['sha256']}",
            )
        await self._store.announced(job, [i["conversation_id"] for i in items])

    async def _write_manifest(self, tenant_id: str, job: uuid.UUID) -> None:
        import json

        archived = await self._store.unannounced(job) if self._bus is None else []
        states = await self._store.item_states(job)
        document = {
            "format": fmt.FORMAT + "/manifest",
            "job_id": str(job),
            "tenant_id": tenant_id,
            "written_at": datetime.now(UTC).isoformat(),
            "items": states,
            "unannounced": len(archived),
        }
        await self._archive.put(fmt.manifest_key(tenant_id, job), json.dumps(document).encode())

    # -- restore ------------------------------------------------------------------------

    async def restore(self, tenant_id: str, conv: uuid.UUID, reason: str) -> bool:
        """Bring an archived conversation back; False when it is not archived."""
        entry = await self._store.entry(conv)
        if entry is None or entry.location != "archived" or entry.tenant_id != tenant_id:
            return False
        assert entry.archive_key is not None and entry.archive_sha256 is not None
        try:
            archived = await self._read_back(entry.archive_key, entry.archive_sha256)
        except ArchiveCorruptError:
            # Retention rewrites an object before it records the new checksum: an object that
            # is whole by its own manifest is still good.
            data = await self._archive.get(entry.archive_key)
            archived = fmt.decode(data or b"")
        if not await self._store.move_in(conv, archived.rows):
            return False
        await self._archive.delete(entry.archive_key)
        if self._bus is not None:
            await self._bus.publish(
                ConversationRestored(
                    tenant_id=tenant_id,
                    correlation_id=f"restore:{conv}",
                    conversation_id=str(conv),
                    lead=entry.lead,
                    sequence=archived.rows[-1].version,
                    reason=reason,
                    events=len(archived.rows),
                ),
                msg_id=f"restored:{conv}:{entry.archive_sha256}",
            )
        return True

    async def ensure_hot(self, tenant_id: str, lead: str) -> bool:
        """Before a lead's message is handled: restore the conversation if it is archived."""
        return await self.restore(tenant_id, conversation_id(tenant_id, lead), "new message")

    async def erase(self, tenant_id: str, conv: uuid.UUID) -> int:
        """GDPR: the archive object and the catalog entry go. Returns archived events."""
        entry = await self._store.entry(conv)
        if entry is None or entry.tenant_id != tenant_id:
            return 0
        events = 0
        if entry.location == "archived" and entry.archive_key:
            data = await self._archive.get(entry.archive_key)
            events = fmt.decode(data).manifest["events"] if data else 0
            await self._archive.delete(entry.archive_key)
        await self._store.forget(conv)
        return events

    # -- retention ----------------------------------------------------------------------

    async def retention(self, tenant_id: str, now: datetime | None = None) -> RetentionReport:
        """Redact message content older than the tenant's ``message_content_days`` in the hot
        store and in archives, and have knowledge forget the leads' turns remembered before
        then; counts, types, times and amounts stay (the metrics)."""
        profile = (await self._tenants.get(tenant_id)).profile
        if profile.message_content_days is None:
            return RetentionReport(None)
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=profile.message_content_days)
        await self.catch_up()
        run = uuid.uuid4()
        report = RetentionReport(run)
        for entry in await self._store.entries(tenant_id, "hot"):
            changed = await self._redact_hot(entry.conversation_id, cutoff)
            if changed:
                report.conversations += 1
                report.events += changed
                await self._announce_redacted(entry, cutoff, changed, archived=False)
        for entry in await self._store.entries(tenant_id, "archived"):
            changed = await self._redact_archived(entry, cutoff)
            if changed:
                report.conversations += 1
                report.archives += 1
                report.events += changed
                await self._announce_redacted(entry, cutoff, changed, archived=True)
        report.memories = await self._forget_memories(tenant_id, cutoff, run)
        rules = {"message_content_days": profile.message_content_days}
        counts = (report.conversations, report.events, report.archives)
        assert report.run_id is not None
        await self._store.record_retention(report.run_id, tenant_id, rules, cutoff, counts)
        if self._bus is not None:
            await self._bus.publish(
                RetentionApplied(
                    tenant_id=tenant_id,
                    correlation_id=f"retention:{report.run_id}",
                    conversation_id=str(report.run_id),
                    lead=TENANT_LEAD,
                    sequence=0,
                    rules=rules,
                    conversations_redacted=report.conversations,
                    events_redacted=report.events,
                    archives_rewritten=report.archives,
                    memories_forgotten=report.memories,
                ),
                msg_id=f"retention:{report.run_id}",
            )
        self._progress(
            f"{tenant_id}: retention redacted {report.events} events in "
            f"{report.conversations} conversations ({report.archives} archives), "
            f"{report.memories} remembered turns forgotten"
        )
        return report

    async def _forget_memories(self, tenant_id: str, cutoff: datetime, run: uuid.UUID) -> int:
        """Each lead's long-term memory (knowledge's vectors) forgets the turns remembered
        before the cutoff. Asked for every lead on every run: nothing to do costs a lookup, and
        a run that failed halfway is made good by the next."""
        if self._bus is None:
            return 0
        entries = [
            *await self._store.entries(tenant_id, "hot"),
            *await self._store.entries(tenant_id, "archived"),
        ]
        leads = sorted({e.lead for e in entries})
        forgotten = 0
        for start in range(0, len(leads), 50):
            answers = await asyncio.gather(
                *(
                    self._bus.request(
                        EraseLeadMemory(
                            tenant_id=tenant_id,
                            correlation_id=f"retention:{run}",
                            lead=lead,
                            before=cutoff,
                        ),
                        MemoryResult,
                        timeout=10,
                    )
                    for lead in leads[start : start + 50]
                )
            )
            for answer in answers:
                if answer.error:
                    raise MemoryNotForgottenError(answer.error)
                forgotten += answer.erased
        return forgotten

    def _redacted(self, rows: list[StoredRow], cutoff: datetime) -> dict[int, bytes]:
        transcoder = self._app.mapper.transcoder
        out = {}
        for row in rows:
            if row.at < cutoff:
                state = redact_state(transcoder, row.topic, row.state)
                if state != row.state:
                    out[row.version] = state
        return out

    async def _redact_hot(self, conv: uuid.UUID, cutoff: datetime) -> int:
        rows = [
            StoredRow(v, n, t, s, self._decode(conv, v, t, s).timestamp)
            for v, n, t, s in await self._store.stored_rows(conv)
        ]
        states = self._redacted(rows, cutoff)
        if states:
            await self._store.replace_states(conv, states, cutoff)
        return len(states)

    async def _redact_archived(self, entry: Any, cutoff: datetime) -> int:
        archived = await self._read_back(entry.archive_key, entry.archive_sha256)
        states = self._redacted(archived.rows, cutoff)
        if not states:
            return 0
        rows = [
            StoredRow(r.version, r.notification_id, r.topic, states.get(r.version, r.state), r.at)
            for r in archived.rows
        ]
        data = fmt.encode(entry.tenant_id, entry.lead, str(entry.conversation_id), rows)
        # Same key, new bytes: the catalog's checksum follows right after the verified write.
        await self._archive.put(entry.archive_key, data)
        await self._read_back(entry.archive_key, fmt.sha256(data))
        await self._store.set_archive_sha(entry.conversation_id, fmt.sha256(data))
        await self._store.mark_redacted(entry.conversation_id, cutoff)
        return len(states)

    async def _announce_redacted(
        self, entry: Any, cutoff: datetime, events: int, *, archived: bool
    ) -> None:
        if self._bus is None:
            return
        await self._bus.publish(
            ConversationContentRedacted(
                tenant_id=entry.tenant_id,
                correlation_id=f"retention:{cutoff.isoformat()}",
                conversation_id=str(entry.conversation_id),
                lead=entry.lead,
                sequence=0,
                before=cutoff,
                events_redacted=events,
                archived=archived,
            ),
            msg_id=f"redacted:{entry.conversation_id}:{cutoff.isoformat()}",
        )


def _owner(event: Any) -> tuple[str, str]:
    env = getattr(event, "env", None)
    if env:
        return env["tenant_id"], env["lead"]
    return event.tenant_id, event.lead  # Started


async def open_lifecycle(
    app: Conversations,
    pool: Any,
    tenants: TenantDirectory,
    bus: Bus | None,
    settings: Any,
    **options: Any,
) -> Lifecycle:
    """Build the lifecycle use cases on the service's resources (its composition)."""
    snapshots = app.snapshots.recorder if app.snapshots is not None else None
    store = LifecycleStore(
        pool,
        app.recorder.events_table_name,  # type: ignore[attr-defined]
        getattr(snapshots, "events_table_name", None),
    )
    await store.ensure_schema()
    archive = fmt.ObjectArchive.from_url(settings.archive_location())
    return Lifecycle(
        app,
        store,
        archive,
        tenants,
        bus,
        archive_after_days=settings.archive_after_days,
        **options,
    )
