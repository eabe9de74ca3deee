"""The tools service's own PostgreSQL tables, every query inside the tenant's RLS scope.

Provider secrets are sealed with the key ring (:class:`SecretBox`) bound to ``tenant/kind``, so
a sealed value copied into another tenant's row does not open. They are unsealed only here and
only to build an adapter; nothing returns them to an API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from taskpilot.tenancy import SecretBox, tenant_transaction
from taskpilot.tenancy.rls import ensure_app_role_sql, tenant_table_sql
from taskpilot.tools.availability import BookingPolicy, Interval

TABLES = (
    "tools_settings",
    "tools_connections",
    "tools_webhook_endpoints",
    "tools_calls",
    "tools_bookings",
    "tools_payment_links",
    "tools_jobs",
)

SCHEMA = (
    ensure_app_role_sql()
    + """
CREATE TABLE IF NOT EXISTS tools_settings (
    tenant_id       text PRIMARY KEY,
    enabled_tools   text[] NOT NULL DEFAULT '{}',
    booking_policy  jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS tools_connections (
    tenant_id   text NOT NULL,
    kind        text NOT NULL,
    provider    text NOT NULL,
    settings    jsonb NOT NULL,
    secrets     text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kind)
);
CREATE TABLE IF NOT EXISTS tools_webhook_endpoints (
    tenant_id    text NOT NULL,
    id           text NOT NULL,
    url          text NOT NULL,
    event_types  text[] NOT NULL,
    secret       text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE IF NOT EXISTS tools_calls (
    tenant_id     text NOT NULL,
    tool_call_id  text NOT NULL,
    tool          text NOT NULL,
    completed     jsonb NOT NULL,
    completed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, tool_call_id)
);
CREATE TABLE IF NOT EXISTS tools_bookings (
    tenant_id        text NOT NULL,
    booking_id       text NOT NULL,
    tool_call_id     text NOT NULL,
    conversation_id  text NOT NULL,
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    status           text NOT NULL,
    provider         text NOT NULL,
    replaces         text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, booking_id)
);
CREATE INDEX IF NOT EXISTS tools_bookings_time ON tools_bookings (tenant_id, starts_at);
CREATE TABLE IF NOT EXISTS tools_payment_links (
    tenant_id        text NOT NULL,
    tool_call_id     text NOT NULL,
    conversation_id  text NOT NULL,
    session_id       text NOT NULL,
    url              text NOT NULL,
    amount_minor     bigint NOT NULL,
    currency         text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    paid_at          timestamptz,
    PRIMARY KEY (tenant_id, tool_call_id),
    UNIQUE (tenant_id, session_id)
);
CREATE TABLE IF NOT EXISTS tools_jobs (
    tenant_id    text NOT NULL,
    job_id       text NOT NULL,
    kind         text NOT NULL,
    status       text NOT NULL,
    parameters   jsonb NOT NULL DEFAULT '{}'::jsonb,
    done_steps   int NOT NULL DEFAULT 0,
    total_steps  int NOT NULL DEFAULT 0,
    state        jsonb NOT NULL DEFAULT '{}'::jsonb,
    result       jsonb,
    error        jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, job_id)
);
"""
    + "".join(tenant_table_sql(t) for t in TABLES)
)

ACTIVE = ("reserved", "confirmed")


@dataclass(frozen=True)
class Connection:
    kind: str
    provider: str
    settings: dict[str, Any]
    secrets: dict[str, Any]


@dataclass(frozen=True)
class ToolsConfig:
    enabled: set[str]
    policy: BookingPolicy
    connections: dict[str, Connection]

    @property
    def connected(self) -> set[str]:
        """Connected kinds: ``calendar``, ``payments``, ``workflows`` (any ``workflow:<name>``)."""
        kinds = {kind.split(":", 1)[0] for kind in self.connections}
        return {"workflows" if kind == "workflow" else kind for kind in kinds}


@dataclass(frozen=True)
class Booking:
    booking_id: str
    tool_call_id: str
    conversation_id: str
    start: datetime
    end: datetime
    status: str
    provider: str
    replaces: str | None = None

    @property
    def interval(self) -> Interval:
        return Interval(self.start, self.end)


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    url: str
    event_types: list[str]
    secret: str


class ToolsRepository:
    def __init__(self, pool: AsyncConnectionPool, box: SecretBox):
        self._pool = pool
        self._box = box

    def _seal(self, tenant_id: str, kind: str, value: dict[str, Any]) -> str:
        return self._box.seal(json.dumps(value), context=f"{tenant_id}/{kind}")

    def _open(self, tenant_id: str, kind: str, sealed: str) -> dict[str, Any]:
        opened: dict[str, Any] = json.loads(self._box.open(sealed, context=f"{tenant_id}/{kind}"))
        return opened

    # -- configuration -------------------------------------------------------------------------

    async def save_settings(
        self, tenant_id: str, enabled: list[str], policy: BookingPolicy
    ) -> None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                """INSERT INTO tools_settings (tenant_id, enabled_tools, booking_policy)
                   VALUES (%s, %s, %s) ON CONFLICT (tenant_id) DO UPDATE SET
                   enabled_tools = EXCLUDED.enabled_tools,
                   booking_policy = EXCLUDED.booking_policy, updated_at = now()""",
                (tenant_id, sorted(set(enabled)), Jsonb(policy.model_dump(mode="json"))),
            )

    async def save_connection(
        self,
        tenant_id: str,
        kind: str,
        provider: str,
        settings: dict[str, Any],
        secrets: dict[str, Any],
    ) -> None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                """INSERT INTO tools_connections (tenant_id, kind, provider, settings, secrets)
                   VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant_id, kind) DO UPDATE SET
                   provider = EXCLUDED.provider, settings = EXCLUDED.settings,
                   secrets = EXCLUDED.secrets, updated_at = now()""",
                (tenant_id, kind, provider, Jsonb(settings), self._seal(tenant_id, kind, secrets)),
            )

    async def delete_connection(self, tenant_id: str, kind: str) -> bool:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute("DELETE FROM tools_connections WHERE kind = %s", (kind,))
            return cur.rowcount > 0

    async def load_config(self, tenant_id: str) -> ToolsConfig:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT enabled_tools, booking_policy FROM tools_settings")
            row = await cur.fetchone()
            await cur.execute("SELECT kind, provider, settings, secrets FROM tools_connections")
            rows = await cur.fetchall()
        return ToolsConfig(
            enabled=set(row["enabled_tools"]) if row else set(),
            policy=BookingPolicy.model_validate(row["booking_policy"] if row else {}),
            connections={
                r["kind"]: Connection(
                    r["kind"],
                    r["provider"],
                    r["settings"],
                    self._open(tenant_id, r["kind"], r["secrets"]),
                )
                for r in rows
            },
        )

    async def describe_connections(self, tenant_id: str) -> list[dict[str, Any]]:
        """What is connected, with the names of the secrets that are set, never their values."""
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT kind, provider, settings, secrets, updated_at FROM tools_connections"
                " ORDER BY kind"
            )
            rows = await cur.fetchall()
        return [
            {
                "kind": r["kind"],
                "provider": r["provider"],
                "settings": r["settings"],
                "secrets_set": sorted(
                    k for k, v in self._open(tenant_id, r["kind"], r["secrets"]).items() if v
                ),
                "updated_at": r["updated_at"],
            }
            for r in rows
        ]

    async def reseal(self, tenant_id: str) -> int:
        """Seal every secret of the tenant again under the newest key; returns how many moved."""
        moved = 0
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute("SELECT kind, secrets FROM tools_connections FOR UPDATE")
            for kind, sealed in await cur.fetchall():
                if self._box.needs_rotation(sealed):
                    fresh = self._seal(tenant_id, kind, self._open(tenant_id, kind, sealed))
                    await conn.execute(
                        "UPDATE tools_connections SET secrets = %s WHERE kind = %s", (fresh, kind)
                    )
                    moved += 1
            cur = await conn.execute("SELECT id, secret FROM tools_webhook_endpoints FOR UPDATE")
            for endpoint_id, sealed in await cur.fetchall():
                if self._box.needs_rotation(sealed):
                    context = f"webhook:{endpoint_id}"
                    fresh = self._seal(tenant_id, context, self._open(tenant_id, context, sealed))
                    await conn.execute(
                        "UPDATE tools_webhook_endpoints SET secret = %s WHERE id = %s",
                        (fresh, endpoint_id),
                    )
                    moved += 1
        return moved

    # -- outgoing webhook endpoints ------------------------------------------------------------

    async def save_endpoint(
        self, tenant_id: str, endpoint_id: str, url: str, event_types: list[str], secret: str
    ) -> None:
        sealed = self._seal(tenant_id, f"webhook:{endpoint_id}", {"secret": secret})
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                """INSERT INTO tools_webhook_endpoints (tenant_id, id, url, event_types, secret)
                   VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant_id, id) DO UPDATE SET
                   url = EXCLUDED.url, event_types = EXCLUDED.event_types,
                   secret = EXCLUDED.secret, updated_at = now()""",
                (tenant_id, endpoint_id, url, sorted(set(event_types)), sealed),
            )

    async def delete_endpoint(self, tenant_id: str, endpoint_id: str) -> bool:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                "DELETE FROM tools_webhook_endpoints WHERE id = %s", (endpoint_id,)
            )
            return cur.rowcount > 0

    async def endpoints(self, tenant_id: str) -> list[WebhookEndpoint]:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                "SELECT id, url, event_types, secret FROM tools_webhook_endpoints ORDER BY id"
            )
            rows = await cur.fetchall()
        return [
            WebhookEndpoint(
                id=r[0],
                url=r[1],
                event_types=list(r[2]),
                secret=self._open(tenant_id, f"webhook:{r[0]}", r[3])["secret"],
            )
            for r in rows
        ]

    # -- tool calls --------------------------------------------------------------------------

    async def completed_call(self, tenant_id: str, tool_call_id: str) -> dict[str, Any] | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                "SELECT completed FROM tools_calls WHERE tool_call_id = %s", (tool_call_id,)
            )
            row = await cur.fetchone()
        return row[0] if row else None

    async def complete_call(
        self, tenant_id: str, tool_call_id: str, tool: str, completed: dict[str, Any]
    ) -> dict[str, Any]:
        """Record the outcome once; a concurrent or earlier outcome wins and is returned."""
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                """INSERT INTO tools_calls (tenant_id, tool_call_id, tool, completed)
                   VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id, tool_call_id) DO NOTHING""",
                (tenant_id, tool_call_id, tool, Jsonb(completed)),
            )
            cur = await conn.execute(
                "SELECT completed FROM tools_calls WHERE tool_call_id = %s", (tool_call_id,)
            )
            row = await cur.fetchone()
        assert row is not None
        stored: dict[str, Any] = row[0]
        return stored

    # -- bookings ----------------------------------------------------------------------------

    async def reserve(
        self,
        tenant_id: str,
        booking: Booking,
        guard: Interval,
        buffers: tuple[timedelta, timedelta],
        ignore: str | None = None,
    ) -> tuple[Booking, list[Interval]]:
        """Reserve ``booking`` unless an active booking, widened by ``buffers`` (before, after),
        overlaps ``guard`` (the new slot widened by the same buffers): between two bookings
        there is the first one's time after and the second one's time before.
        One reservation at a time per tenant (an advisory lock), so of several
        leads racing for one slot exactly one wins. Returns the booking that holds this id (an
        earlier delivery's, or the new one), or the overlapping intervals when it lost.
        ``ignore`` is a booking being moved: it does not block its own new slot.
        """
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"tools.bookings:{tenant_id}",)
            )
            mine = await self._booking(conn, booking.booking_id)
            if mine is not None:
                return mine, []
            cur = await conn.execute(
                """SELECT starts_at, ends_at FROM tools_bookings
                   WHERE status = ANY(%s) AND starts_at - %s < %s AND ends_at + %s > %s
                     AND booking_id IS DISTINCT FROM %s""",
                (list(ACTIVE), buffers[0], guard.end, buffers[1], guard.start, ignore),
            )
            taken = [Interval(r[0], r[1]) for r in await cur.fetchall()]
            if taken:
                return booking, taken
            await conn.execute(
                """INSERT INTO tools_bookings (tenant_id, booking_id, tool_call_id,
                   conversation_id, starts_at, ends_at, status, provider, replaces)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    tenant_id,
                    booking.booking_id,
                    booking.tool_call_id,
                    booking.conversation_id,
                    booking.start,
                    booking.end,
                    "reserved",
                    booking.provider,
                    booking.replaces,
                ),
            )
        return booking, []

    async def booking(self, tenant_id: str, booking_id: str) -> Booking | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            return await self._booking(conn, booking_id)

    async def _booking(self, conn: AsyncConnection, booking_id: str) -> Booking | None:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            """SELECT booking_id, tool_call_id, conversation_id, starts_at AS start,
                      ends_at AS end, status, provider, replaces
               FROM tools_bookings WHERE booking_id = %s""",
            (booking_id,),
        )
        row = await cur.fetchone()
        return Booking(**row) if row else None

    async def set_booking_status(self, tenant_id: str, booking_id: str, status: str) -> None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                "UPDATE tools_bookings SET status = %s WHERE booking_id = %s", (status, booking_id)
            )

    async def active_bookings(
        self, tenant_id: str, start: datetime, end: datetime
    ) -> list[Booking]:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """SELECT booking_id, tool_call_id, conversation_id, starts_at AS start,
                          ends_at AS end, status, provider, replaces
                   FROM tools_bookings WHERE status = ANY(%s) AND starts_at < %s AND ends_at > %s
                   ORDER BY starts_at""",
                (list(ACTIVE), end, start),
            )
            return [Booking(**r) for r in await cur.fetchall()]

    # -- payment links -------------------------------------------------------------------------

    async def save_payment_link(
        self,
        tenant_id: str,
        tool_call_id: str,
        conversation_id: str,
        session_id: str,
        url: str,
        amount_minor: int,
        currency: str,
    ) -> None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                """INSERT INTO tools_payment_links (tenant_id, tool_call_id, conversation_id,
                   session_id, url, amount_minor, currency) VALUES (%s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (tenant_id, tool_call_id) DO NOTHING""",
                (tenant_id, tool_call_id, conversation_id, session_id, url, amount_minor, currency),
            )

    async def mark_paid(self, tenant_id: str, session_id: str) -> dict[str, Any] | None:
        """Mark the link paid (first time only) and return it; None for a session not ours."""
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """UPDATE tools_payment_links SET paid_at = coalesce(paid_at, now())
                   WHERE session_id = %s
                   RETURNING tool_call_id, conversation_id, amount_minor, currency""",
                (session_id,),
            )
            return await cur.fetchone()

    async def count_payment_links(self, tenant_id: str) -> int:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute("SELECT count(*) FROM tools_payment_links")
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # -- jobs --------------------------------------------------------------------------------

    async def create_job(
        self, tenant_id: str, job_id: str, kind: str, parameters: dict[str, Any]
    ) -> None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                """INSERT INTO tools_jobs (tenant_id, job_id, kind, status, parameters)
                   VALUES (%s, %s, %s, 'queued', %s) ON CONFLICT DO NOTHING""",
                (tenant_id, job_id, kind, Jsonb(parameters)),
            )

    async def job(self, tenant_id: str, job_id: str) -> dict[str, Any] | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """SELECT job_id, kind, status, parameters, done_steps, total_steps, state,
                          result, error, created_at, updated_at
                   FROM tools_jobs WHERE job_id = %s""",
                (job_id,),
            )
            return await cur.fetchone()

    async def save_job(self, tenant_id: str, job_id: str, **fields: Any) -> None:
        """Checkpoint a job (status, steps, state, result, error)."""
        allowed = {"status", "done_steps", "total_steps", "state", "result", "error"}
        assert set(fields) <= allowed, set(fields) - allowed
        columns = ", ".join(f"{name} = %s" for name in fields)  # names from `allowed` only
        values = [Jsonb(v) if isinstance(v, dict) else v for v in fields.values()]
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                f"UPDATE tools_jobs SET {columns}, updated_at = now() WHERE job_id = %s",  # noqa: S608
                (*values, job_id),
            )

    async def week_of_tool_facts(
        self, tenant_id: str, start: datetime, end: datetime
    ) -> dict[str, Any]:
        """Counts of the tenant's own tool facts in ``[start, end)``, paid sums per currency."""
        window = {"s": start, "e": end}
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                """SELECT
                     count(*) FILTER (WHERE status = 'confirmed'),
                     count(*) FILTER (WHERE status = 'cancelled')
                   FROM tools_bookings WHERE created_at >= %(s)s AND created_at < %(e)s""",
                window,
            )
            bookings = await cur.fetchone()
            cur = await conn.execute(
                """SELECT count(*) FROM tools_payment_links
                   WHERE created_at >= %(s)s AND created_at < %(e)s""",
                window,
            )
            links = await cur.fetchone()
            cur = await conn.execute(
                """SELECT currency, count(*), sum(amount_minor) FROM tools_payment_links
                   WHERE paid_at >= %(s)s AND paid_at < %(e)s GROUP BY currency
                   ORDER BY currency""",
                window,
            )
            paid = await cur.fetchall()
        assert bookings is not None and links is not None
        return {
            "bookings": int(bookings[0]),
            "cancellations": int(bookings[1]),
            "payment_links": int(links[0]),
            "payments": sum(int(row[1]) for row in paid),
            "paid": {row[0]: int(row[2]) for row in paid},
        }
