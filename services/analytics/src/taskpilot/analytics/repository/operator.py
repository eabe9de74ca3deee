"""What people decide on the dashboard (dead-letter actions, budgets), and the maintenance of
the read models (schema version, clearing for a rebuild). Always on the primary."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from taskpilot.analytics.repository.schema import (
    PROJECTION_TABLES,
    VERSION,
    ddl,
    drop_projections_sql,
)
from taskpilot.tenancy import tenant_transaction


class OperatorStore:
    def __init__(self, pool: AsyncConnectionPool):
        self._pool = pool

    # -- schema ----------------------------------------------------------------------------

    async def migrate(self) -> bool:
        """Create the tables; drop and recreate the read models when their version changed.
        True when the read models are new and must be replayed from the event history."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('taskpilot.analytics'))")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS analytics_meta (key text PRIMARY KEY, value text)"
            )
            cur = await conn.execute("SELECT value FROM analytics_meta WHERE key = 'version'")
            row = await cur.fetchone()
            stale = row is None or row[0] != VERSION
            if stale:
                await conn.execute(drop_projections_sql())
            await conn.execute(ddl())
            await conn.execute(
                """INSERT INTO analytics_meta VALUES ('version', %s)
                   ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value""",
                (VERSION,),
            )
            return stale

    async def clear_projections(self, conn: AsyncConnection) -> None:
        """Empty every read model, for every tenant (a rebuild; the caller holds the lock)."""
        await conn.execute("TRUNCATE " + ", ".join(PROJECTION_TABLES))

    async def snapshot(self, tenant_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every read-model row of a tenant, in a stable order (to compare two rebuilds)."""
        out: dict[str, list[dict[str, Any]]] = {}
        async with tenant_transaction(self._pool, tenant_id) as conn:
            for table in PROJECTION_TABLES:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(f"SELECT * FROM {table}")  # noqa: S608 (a fixed table name)
                rows = await cur.fetchall()
                out[table] = sorted(rows, key=lambda r: repr(sorted(r.items())))
        return out

    # -- dead letters ----------------------------------------------------------------------

    async def record_action(
        self, tenant_id: str, letter_id: str, action: str, actor: str, msg_id: str | None
    ) -> None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                """INSERT INTO analytics_dead_letter_actions
                     (tenant_id, dead_letter_id, action, actor, msg_id, at)
                   VALUES (%s, %s, %s, %s, %s, clock_timestamp())""",
                (tenant_id, letter_id, action, actor, msg_id),
            )

    # -- budgets ---------------------------------------------------------------------------

    async def budget(self, tenant_id: str) -> dict[str, Any] | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT monthly_usd, near_share, updated_by, updated_at FROM analytics_budgets"
            )
            return await cur.fetchone()

    async def set_budget(
        self, tenant_id: str, monthly_usd: float | None, near_share: float, actor: str
    ) -> None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                """INSERT INTO analytics_budgets (tenant_id, monthly_usd, near_share, updated_by)
                   VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id) DO UPDATE SET
                     monthly_usd = EXCLUDED.monthly_usd, near_share = EXCLUDED.near_share,
                     updated_by = EXCLUDED.updated_by, updated_at = now()""",
                (tenant_id, monthly_usd, near_share, actor),
            )

    # -- tenants ---------------------------------------------------------------------------

    async def tenant_ids(self) -> list[str]:
        """Every tenant of the directory, for operators. Read-only use of the directory's table
        until :class:`TenantDirectory` offers a listing."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT id FROM tenants ORDER BY id")
            return [r[0] for r in await cur.fetchall()]
