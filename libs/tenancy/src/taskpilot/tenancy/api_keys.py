"""API keys of machine clients (repository): created with a secret shown once, stored as the
secret's SHA-256, listed without it, revoked at once.

The table sits under row-level security like every tenant table; a key names its tenant
(``tp_<tenant>.<id>.<secret>``), so even the lookup of a presented key runs inside that
tenant's transaction. Nothing is cached: a revoked key fails on its next request.
"""

from __future__ import annotations

from datetime import datetime

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from taskpilot.tenancy.access import (
    NotAuthenticatedError,
    Principal,
    Role,
    new_api_key,
    parse_api_key,
    secret_matches,
)
from taskpilot.tenancy.rls import ensure_app_role_sql, tenant_table_sql, tenant_transaction

SCHEMA_SQL = (
    ensure_app_role_sql()
    + """
CREATE TABLE IF NOT EXISTS api_keys (
    tenant_id      text NOT NULL,
    id             text NOT NULL,
    name           text NOT NULL,
    roles          text[] NOT NULL,
    secret_sha256  text NOT NULL,
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    PRIMARY KEY (tenant_id, id)
);
"""
    + tenant_table_sql("api_keys")
)


class ApiKey(BaseModel):
    """A key as listed: never its secret."""

    id: str
    name: str
    roles: list[Role]
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyNotFoundError(LookupError):
    """No key with this id in this tenant."""


class ApiKeyStore:
    def __init__(self, pool: AsyncConnectionPool):
        self._pool = pool

    async def ensure_schema(self) -> None:
        # Every service with an HTTP API calls this at start: once the table is there, no DDL
        # (role grants racing other services' migrations would fail for nothing).
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('taskpilot.api_keys'))")
            cur = await conn.execute("SELECT to_regclass('api_keys') IS NOT NULL")
            row = await cur.fetchone()
            if not (row and row[0]):
                await conn.execute(SCHEMA_SQL)

    async def create(
        self, tenant_id: str, name: str, roles: frozenset[Role], created_by: str
    ) -> tuple[ApiKey, str]:
        """The new key and its full token (the only time the secret is seen)."""
        parts = new_api_key(tenant_id)
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """INSERT INTO api_keys (tenant_id, id, name, roles, secret_sha256, created_by)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   RETURNING id, name, roles, created_by, created_at, revoked_at""",
                (tenant_id, parts.key_id, name, sorted(roles), parts.secret_hash, created_by),
            )
            row = await cur.fetchone()
        assert row is not None
        return ApiKey.model_validate(row), parts.token

    async def keys(self, tenant_id: str) -> list[ApiKey]:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """SELECT id, name, roles, created_by, created_at, revoked_at FROM api_keys
                   ORDER BY created_at, id"""
            )
            return [ApiKey.model_validate(row) for row in await cur.fetchall()]

    async def revoke(self, tenant_id: str, key_id: str) -> None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                """UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
                   WHERE id = %s""",
                (key_id,),
            )
            if cur.rowcount == 0:
                raise ApiKeyNotFoundError(key_id)

    async def principal(self, token: str) -> Principal:
        """The key's principal, or NotAuthenticatedError (malformed, unknown, wrong, revoked)."""
        parts = parse_api_key(token)
        if parts is None:
            raise NotAuthenticatedError("malformed API key")
        async with tenant_transaction(self._pool, parts.tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT name, roles, secret_sha256, revoked_at FROM api_keys WHERE id = %s",
                (parts.key_id,),
            )
            row = await cur.fetchone()
        if row is None or not secret_matches(parts.secret, row["secret_sha256"]):
            raise NotAuthenticatedError("unknown API key")
        if row["revoked_at"] is not None:
            raise NotAuthenticatedError("the API key was revoked")
        return Principal(
            subject=f"api-key:{parts.key_id}",
            tenant_id=parts.tenant_id,
            roles=frozenset(Role(r) for r in row["roles"] if r != Role.OPERATOR),
            name=row["name"],
            credential=token,
        )
