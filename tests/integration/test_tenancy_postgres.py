"""Tenant directory and row-level security against a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from taskpilot.runtime.db import migrate, open_pool
from taskpilot.tenancy import (
    BusinessProfile,
    SecretBox,
    Tenant,
    TenantDirectory,
    TenantSecrets,
    UnknownTenantError,
    generate_key,
    tenant_transaction,
)
from taskpilot.tenancy.rls import ensure_app_role_sql, tenant_table_sql

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(fresh_database_url, max_size=3)
    yield pool
    await pool.close()


def tenant(tenant_id: str, number: str) -> Tenant:
    return Tenant(
        id=tenant_id,
        name=f"Shop {tenant_id}",
        profile=BusinessProfile(name=f"Shop {tenant_id}"),
        secrets=TenantSecrets(
            app_secret=SecretStr(f"app-secret-{tenant_id}"),
            access_token=SecretStr(f"EAAG-token-{tenant_id}"),
            verify_token=SecretStr(f"verify-{tenant_id}"),
        ),
        phone_number_ids=[number],
    )


async def test_directory_round_trip_keeps_secrets_sealed_at_rest(
    pool: AsyncConnectionPool, fresh_database_url: str
) -> None:
    box = SecretBox({"k1": generate_key()})
    directory = TenantDirectory(pool, box)
    await directory.ensure_schema()
    await directory.upsert(tenant("acme", "555001"))

    loaded = await directory.get("acme")
    assert loaded.secrets.app_secret.get_secret_value() == "app-secret-acme"
    assert loaded.phone_number_ids == ["555001"]
    assert await directory.tenant_for_number("555001") == "acme"
    assert await directory.tenant_for_number("000") is None
    with pytest.raises(UnknownTenantError):
        await directory.get("nobody")
    with psycopg.connect(fresh_database_url) as conn:
        raw = conn.execute("SELECT secrets::text FROM tenants").fetchone()
    assert raw is not None and "app-secret-acme" not in raw[0] and "EAAG" not in raw[0]
    assert "app-secret" not in repr(loaded)  # SecretStr never prints


async def test_rotated_key_ring_still_opens_old_secrets(pool: AsyncConnectionPool) -> None:
    old = generate_key()
    await TenantDirectory(pool, SecretBox({"old": old})).ensure_schema()
    await TenantDirectory(pool, SecretBox({"old": old})).upsert(tenant("rot", "555002"))
    rotated = TenantDirectory(pool, SecretBox({"new": generate_key(), "old": old}))
    loaded = await rotated.get("rot")
    assert loaded.secrets.access_token.get_secret_value() == "EAAG-token-rot"


async def test_row_level_security_hides_other_tenants_rows(pool: AsyncConnectionPool) -> None:
    table = f"rls_probe_{uuid.uuid4().hex[:6]}"
    await migrate(
        pool,
        "test.rls",
        ensure_app_role_sql()
        + f"CREATE TABLE {table} (tenant_id text NOT NULL, note text);"
        + tenant_table_sql(table),
    )
    async with tenant_transaction(pool, "a") as conn:
        await conn.execute(f"INSERT INTO {table} VALUES ('a', 'mine')")  # noqa: S608
    async with tenant_transaction(pool, "b") as conn:
        await conn.execute(f"INSERT INTO {table} VALUES ('b', 'theirs')")  # noqa: S608
        cur = await conn.execute(f"SELECT tenant_id, note FROM {table}")  # noqa: S608
        assert await cur.fetchall() == [("b", "theirs")]
        # Even a hand-written WHERE for another tenant sees nothing...
        cur = await conn.execute(f"SELECT count(*) FROM {table} WHERE tenant_id = 'a'")  # noqa: S608
        assert await cur.fetchone() == (0,)
    # ...and writing a row for another tenant is refused by the policy.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with tenant_transaction(pool, "b") as conn:
            await conn.execute(f"INSERT INTO {table} VALUES ('a', 'forged')")  # noqa: S608
