"""The tenant directory: who the tenants are, their WhatsApp numbers, profile and secrets.

Secrets (app secret, access token, verify token) are sealed with :class:`SecretBox` and
never leave this module unsealed except as :class:`pydantic.SecretStr`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from taskpilot.contracts.envelope import TenantId
from taskpilot.contracts.whatsapp import TemplateMessage
from taskpilot.tenancy.secrets import SecretBox

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS tenants (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    profile     jsonb NOT NULL DEFAULT '{}'::jsonb,
    secrets     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS tenant_numbers (
    phone_number_id       text PRIMARY KEY,
    tenant_id             text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    display_phone_number  text
);
CREATE INDEX IF NOT EXISTS tenant_numbers_tenant ON tenant_numbers (tenant_id);
"""


class BusinessProfile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    timezone: str = "UTC"
    languages: list[str] = ["en"]
    tone: str = "friendly and concise"
    greeting_template: str = "Hi! 👋 Thanks for writing to {name}. How can we help you today?"
    thanks_template: str = "You're welcome! Anything else we can do for you?"
    payment_received_template: str = "Thank you! We've received your payment{amount}. 🙏"
    handoff_message: str = (
        "Thanks for your message! A member of the {name} team will get back to you shortly."
    )
    window_template: TemplateMessage | None = Field(
        default=None,
        description=(
            "Approved WhatsApp template sent when a reply comes after the lead's 24-hour "
            "window closed (None: a person takes the conversation over instead)"
        ),
    )
    enabled_tools: list[str] | None = Field(
        default=None,
        description=(
            "Tools the assistant may offer the model (a subset of the tools service's "
            "configuration, which still refuses any other); None offers none"
        ),
    )
    monthly_budget_usd: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Monthly model budget, set in onboarding and enforced by inference (None: the "
            "inference service's configured default)"
        ),
    )
    budget_near_share: float = Field(
        default=0.8, gt=0, le=1, description="From this share of the budget on, no premium"
    )

    archive_after_days: int | None = Field(
        default=None,
        ge=1,
        description="Archive a conversation idle this long (None: the service's default)",
    )
    message_content_days: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Retention: delete message content older than this, in the hot store and the "
            "archive, keeping anonymised metrics (None: keep content)"
        ),
    )

    def render(self, template: str) -> str:
        return template.replace("{name}", self.name)


class TenantSecrets(BaseModel):
    app_secret: SecretStr
    access_token: SecretStr
    verify_token: SecretStr


class Tenant(BaseModel):
    id: TenantId
    name: str
    profile: BusinessProfile
    secrets: TenantSecrets
    phone_number_ids: list[str] = Field(default_factory=list)


class UnknownTenantError(LookupError):
    """No tenant has this id or WhatsApp number."""


class TenantDirectory:
    """Reads and writes tenants. Lookups are cached for ``ttl_s`` (they sit on the hot path)."""

    def __init__(self, pool: AsyncConnectionPool, box: SecretBox, ttl_s: float = 30.0):
        self._pool = pool
        self._box = box
        self._ttl = ttl_s
        self._by_id: dict[str, tuple[float, Tenant]] = {}
        self._by_number: dict[str, tuple[float, str | None]] = {}

    async def ensure_schema(self) -> None:
        # The lock is released at commit, after the tables are visible to the next replica.
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('taskpilot.tenants'))")
            await conn.execute(SCHEMA_SQL)

    async def upsert(self, tenant: Tenant) -> None:
        sealed = self._box.seal(
            json.dumps({k: v.get_secret_value() for k, v in tenant.secrets}),
            context=tenant.id,
        )
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO tenants (id, name, profile, secrets) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,
                     profile = EXCLUDED.profile, secrets = EXCLUDED.secrets, updated_at = now()""",
                (tenant.id, tenant.name, tenant.profile.model_dump_json(), sealed),
            )
            for number in tenant.phone_number_ids:
                await conn.execute(
                    """INSERT INTO tenant_numbers (phone_number_id, tenant_id) VALUES (%s, %s)
                       ON CONFLICT (phone_number_id)
                       DO UPDATE SET tenant_id = EXCLUDED.tenant_id""",
                    (number, tenant.id),
                )
        self._by_id.pop(tenant.id, None)
        for number in tenant.phone_number_ids:
            self._by_number.pop(number, None)

    async def get(self, tenant_id: str) -> Tenant:
        cached = self._by_id.get(tenant_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        tenant = await self._load(tenant_id)
        self._by_id[tenant_id] = (time.monotonic() + self._ttl, tenant)
        return tenant

    async def ids(self) -> list[str]:
        """Every tenant's id (for jobs that visit each tenant)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT id FROM tenants ORDER BY id")
            return [row[0] for row in await cur.fetchall()]

    async def tenant_for_number(self, phone_number_id: str) -> str | None:
        cached = self._by_number.get(phone_number_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT tenant_id FROM tenant_numbers WHERE phone_number_id = %s",
                (phone_number_id,),
            )
            row = await cur.fetchone()
        tenant_id = row[0] if row else None
        self._by_number[phone_number_id] = (time.monotonic() + self._ttl, tenant_id)
        return tenant_id

    async def _load(self, tenant_id: str) -> Tenant:
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """SELECT t.id, t.name, t.profile, t.secrets,
                          coalesce(array_agg(n.phone_number_id)
                                   FILTER (WHERE n.phone_number_id IS NOT NULL), '{}') AS numbers
                   FROM tenants t LEFT JOIN tenant_numbers n ON n.tenant_id = t.id
                   WHERE t.id = %s GROUP BY t.id""",
                (tenant_id,),
            )
            row: dict[str, Any] | None = await cur.fetchone()
        if row is None:
            raise UnknownTenantError(tenant_id)
        secrets = json.loads(self._box.open(row["secrets"], context=row["id"]))
        return Tenant(
            id=row["id"],
            name=row["name"],
            profile=BusinessProfile.model_validate(row["profile"]),
            secrets=TenantSecrets.model_validate(secrets),
            phone_number_ids=list(row["numbers"]),
        )
