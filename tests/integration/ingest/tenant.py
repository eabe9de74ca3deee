"""One tenant of ingest's HTTP-surface tests, and how to seed it."""

from __future__ import annotations

from pydantic import SecretStr

from taskpilot.runtime.db import open_pool
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.tenancy import BusinessProfile, SecretBox, Tenant, TenantDirectory, TenantSecrets

TENANT, NUMBER, SECRET, VERIFY = "fuzzed", "5550003", "fuzz-app-secret", "fuzz-verify"
MAX_BODY = 64 * 1024


async def seed(database_url: str) -> None:
    pool = await open_pool(database_url, max_size=1)
    try:
        directory = TenantDirectory(pool, SecretBox.from_setting(DEV_SECRET_KEYS))
        await directory.ensure_schema()
        await directory.upsert(
            Tenant(
                id=TENANT,
                name="Fuzzed shop",
                profile=BusinessProfile(name="Fuzzed shop"),
                secrets=TenantSecrets(
                    app_secret=SecretStr(SECRET),
                    access_token=SecretStr("EAAfuzz"),
                    verify_token=SecretStr(VERIFY),
                ),
                phone_number_ids=[NUMBER],
            )
        )
    finally:
        await pool.close()
