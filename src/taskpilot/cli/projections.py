"""``taskpilot projections rebuild``: rebuild analytics' read models from the event history.

Safe while analytics runs: live projections wait for the rebuild (see
:mod:`taskpilot.analytics.rebuild`). ``--compare`` prints a digest of every tenant's read
models before and after, which must be equal when nothing happened in between.
"""

from __future__ import annotations

import hashlib
import sys

from taskpilot.analytics.rebuild import Rebuilder
from taskpilot.analytics.repository import OperatorStore, ProjectionStore
from taskpilot.analytics.settings import AnalyticsSettings
from taskpilot.contracts.dlq import UNKNOWN_TENANT
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.permissions import ADMIN


async def rebuild(compare: bool) -> int:
    settings = AnalyticsSettings()
    bus = Bus(
        settings.nats_url,
        name="projections-rebuild",
        credentials=settings.nats_credentials(ADMIN),
    )
    await bus.connect()
    pool = await open_pool(settings.database_url, max_size=4)
    try:
        operator = OperatorStore(pool)
        await operator.migrate()
        before = await digests(operator) if compare else {}
        rebuilder = Rebuilder(bus.js, settings.database_url, ProjectionStore(pool), operator)
        report = await rebuilder.rebuild(
            lambda stream, n: print(f"\r  {stream}: {n} events", end="", file=sys.stderr)
        )
        print(file=sys.stderr)
        for stream, applied in report.applied.items():
            print(f"{stream}: {applied} events applied, {report.skipped[stream]} skipped")
        if not compare:
            return 0
        after = await digests(operator)
        changed = sorted(t for t in before.keys() | after.keys() if before.get(t) != after.get(t))
        for tenant in sorted(after):
            verdict = "CHANGED" if tenant in changed else "same"
            print(f"tenant {tenant}: {after[tenant][:16]}  {verdict}")
        return 1 if changed else 0
    finally:
        await pool.close()
        await bus.close()


async def digests(operator: OperatorStore) -> dict[str, str]:
    out = {}
    for tenant in [*await operator.tenant_ids(), UNKNOWN_TENANT]:
        snapshot = await operator.snapshot(tenant)
        out[tenant] = hashlib.sha256(repr(snapshot).encode()).hexdigest()
    return out
