"""PostgreSQL pools and idempotent schema set-up."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool


async def open_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(url, min_size=min_size, max_size=max_size, open=False)
    await pool.open(wait=True, timeout=30)
    return pool


async def migrate(pool: AsyncConnectionPool, name: str, ddl: str) -> None:
    """Run idempotent DDL under an advisory lock, so replicas starting together do not race."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))
        await conn.execute(ddl)
