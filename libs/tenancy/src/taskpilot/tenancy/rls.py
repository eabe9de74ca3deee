"""Row-level security: the one helper every tenant-scoped query goes through.

Tables get a policy ``tenant_id = current_setting('taskpilot.tenant_id')`` with FORCE, and
:func:`tenant_transaction` sets that setting per transaction and drops to the non-owner
role ``taskpilot_app`` (superusers and table owners would bypass the policy otherwise).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

APP_ROLE = "taskpilot_app"
SETTING = "taskpilot.tenant_id"


@asynccontextmanager
async def tenant_transaction(
    pool: AsyncConnectionPool, tenant_id: str
) -> AsyncIterator[AsyncConnection]:
    """A transaction that can see and write only ``tenant_id``'s rows."""
    async with pool.connection() as conn, conn.transaction():
        # SET LOCAL ROLE and the tenant in one round trip (``role`` is a setting too, checked
        # as SET ROLE checks it): every tenant's write pays this.
        await conn.execute(
            "SELECT set_config('role', %s, true), set_config(%s, %s, true)",
            (APP_ROLE, SETTING, tenant_id),
        )
        yield conn


async def switch_tenant(conn: AsyncConnection, tenant_id: str) -> None:
    """Inside a :func:`tenant_transaction`: the statements after this see only ``tenant_id``'s
    rows (one transaction applying several tenants' changes in turn)."""
    await conn.execute("SELECT set_config(%s, %s, true)", (SETTING, tenant_id))


def ensure_app_role_sql() -> str:
    return f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
    CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS;
  END IF;
-- Roles are per server, and each service migrates under its own lock: services starting
-- together on a fresh server race to create it.
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
GRANT {APP_ROLE} TO CURRENT_USER;
"""


def tenant_table_sql(table: str) -> str:
    """DDL that puts ``table`` (which has a ``tenant_id`` column) under tenant isolation."""
    return f"""
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON {table};
CREATE POLICY tenant_isolation ON {table}
  USING (tenant_id = current_setting('{SETTING}', true))
  WITH CHECK (tenant_id = current_setting('{SETTING}', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE};
"""
