"""The lifecycle jobs on a schedule: every ``lifecycle_interval_s`` one replica of the
conversation service archives idle conversations and applies retention, tenant by tenant.

Each replica ticks (every ``tick_s``); a tick runs the jobs only with the schedule's lease
(:meth:`LifecycleStore.scheduled_run`: a PostgreSQL advisory lock, and no run started within
the interval), so however many replicas tick, the jobs run once per interval and never twice
at the same time. Every run is a row in ``lifecycle_runs`` and, per tenant, a
``LifecycleRunFinished`` event. A run killed midway leaves an archive job that the next run
resumes (see :mod:`taskpilot.conversation.lifecycle`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass

from taskpilot.contracts.conversation import TENANT_LEAD, LifecycleRunFinished
from taskpilot.conversation.lifecycle import ArchiveReport, Lifecycle
from taskpilot.conversation.settings import ConversationSettings
from taskpilot.runtime.bus import Bus
from taskpilot.tenancy import TenantDirectory

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    run_id: uuid.UUID
    tenants: int = 0
    archived: int = 0
    redacted: int = 0
    failures: int = 0


class LifecycleSchedule:
    def __init__(
        self,
        lifecycle: Lifecycle,
        tenants: TenantDirectory,
        bus: Bus | None,
        *,
        interval_s: float,
        tick_s: float | None = None,
        name: str = "lifecycle",
        replica: str | None = None,
    ):
        self._lifecycle = lifecycle
        self._tenants = tenants
        self._bus = bus
        self._interval = interval_s
        self._tick = tick_s if tick_s is not None else min(interval_s, 60.0)
        self._name = name
        self.replica = replica or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    async def run(self) -> None:
        """Tick forever (a background task of the service)."""
        while True:
            await self.tick()
            await asyncio.sleep(self._tick)  # the cadence of a periodic job, not a wait

    async def tick(self) -> RunReport | None:
        """Run the jobs if this replica holds the lease and they are due; None otherwise."""
        store = self._lifecycle.store
        async with store.scheduled_run(self._name, self.replica, self._interval) as run:
            if run is None:
                return None
            report = await self._run(run)
            await store.finish_run(
                run, report.tenants, report.archived, report.redacted, report.failures
            )
        log.info(
            "lifecycle run %s: %d tenants, %d archived, %d events redacted, %d failed",
            run,
            report.tenants,
            report.archived,
            report.redacted,
            report.failures,
        )
        return report

    async def _run(self, run: uuid.UUID) -> RunReport:
        report = RunReport(run)
        for tenant in await self._tenants.ids():
            report.tenants += 1
            try:
                archived = await self._lifecycle.archive(tenant)
                retention = await self._lifecycle.retention(tenant)
            except Exception:
                # One tenant's failure (a store outage, a corrupt archive) must not stop the
                # others; its unfinished job is resumed by the next run.
                log.exception("lifecycle run %s: tenant %s failed", run, tenant)
                report.failures += 1
                continue
            report.archived += archived.archived
            report.redacted += retention.events
            await self._announce(run, tenant, archived, retention.events)
        return report

    async def _announce(
        self, run: uuid.UUID, tenant: str, archived: ArchiveReport, redacted: int
    ) -> None:
        if self._bus is None:
            return
        await self._bus.publish(
            LifecycleRunFinished(
                tenant_id=tenant,
                correlation_id=f"lifecycle:{run}",
                conversation_id=str(run),
                lead=TENANT_LEAD,
                sequence=0,
                archived=archived.archived,
                skipped=sum(archived.skipped.values()),
                resumed=archived.resumed,
                events_redacted=redacted,
            ),
            msg_id=f"lifecycle:{run}:{tenant}",
        )


def lifecycle_schedule(
    lifecycle: Lifecycle, tenants: TenantDirectory, bus: Bus | None, settings: ConversationSettings
) -> LifecycleSchedule | None:
    """The schedule the settings ask for (None when ``lifecycle_schedule`` is off)."""
    if not settings.lifecycle_schedule:
        return None
    return LifecycleSchedule(lifecycle, tenants, bus, interval_s=settings.lifecycle_interval_s)
