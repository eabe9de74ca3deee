"""Tenant configuration through the HTTP API: secrets sealed at rest, never returned, rotated
to a new key; one tenant never sees another's configuration."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.tenancy import SecretBox, generate_key
from taskpilot.tools.repository import ToolsRepository
from tests.integration.tools.helpers import WEBHOOK_SECRET, caldav_connection, configure

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRETS = ("caldav-password", WEBHOOK_SECRET, "sk_test_standin", "endpoint-secret-0123456789")


async def configured(api: httpx.AsyncClient, tenant: str) -> None:
    await configure(
        api,
        tenant,
        calendar=caldav_connection("http://127.0.0.1:1/cal/", tenant),
        stripe_url="http://127.0.0.1:1",
    )
    response = await api.put(
        f"/v1/tenants/{tenant}/webhooks/crm",
        json={
            "url": "http://127.0.0.1:1/hook",
            "event_types": ["SlotBooked"],
            "secret": SECRETS[3],
        },
    )
    assert response.status_code == 204


async def test_secrets_are_never_returned(api: httpx.AsyncClient, tenant: str) -> None:
    await configured(api, tenant)

    texts = [
        (await api.get(f"/v1/tenants/{tenant}/tools/connections")).text,
        (await api.get(f"/v1/tenants/{tenant}/tools/settings")).text,
        (await api.get(f"/v1/tenants/{tenant}/webhooks")).text,
    ]

    connections = {
        c["kind"]: c for c in (await api.get(f"/v1/tenants/{tenant}/tools/connections")).json()
    }
    assert connections["payments"]["secrets_set"] == ["api_key", "webhook_secret"]
    assert connections["calendar"]["secrets_set"] == ["password"]
    for text in texts:
        assert not any(secret in text for secret in SECRETS)


async def test_secrets_are_sealed_at_rest(
    api: httpx.AsyncClient, tenant: str, tools_database: str
) -> None:
    await configured(api, tenant)

    with psycopg.connect(tools_database) as conn:
        rows = conn.execute(
            """SELECT secrets FROM tools_connections WHERE tenant_id = %(t)s
               UNION ALL SELECT secret FROM tools_webhook_endpoints WHERE tenant_id = %(t)s""",
            {"t": tenant},
        ).fetchall()
    assert len(rows) == 3
    for (sealed,) in rows:
        assert sealed.startswith("tp1.") and not any(s in sealed for s in SECRETS)


async def test_rotation_reseals_under_the_newest_key(
    api: httpx.AsyncClient, tenant: str, tools_database: str
) -> None:
    await configured(api, tenant)
    rotated = SecretBox.from_setting(f"k2:{generate_key()},{DEV_SECRET_KEYS}")
    from taskpilot.runtime.db import open_pool

    pool = await open_pool(tools_database, max_size=2)
    try:
        repo = ToolsRepository(pool, rotated)
        assert await repo.reseal(tenant) == 3
        assert await repo.reseal(tenant) == 0
        config = await repo.load_config(tenant)
        assert config.connections["payments"].secrets["api_key"] == "sk_test_standin"
        [endpoint] = await repo.endpoints(tenant)
        assert endpoint.secret == SECRETS[3]
    finally:
        await pool.close()


async def test_one_tenant_never_sees_anothers_configuration(
    api: httpx.AsyncClient, tenant: str
) -> None:
    await configured(api, tenant)
    other = f"{tenant}x"

    assert (await api.get(f"/v1/tenants/{other}/tools/connections")).json() == []
    assert (await api.get(f"/v1/tenants/{other}/webhooks")).json() == []
    assert (await api.get(f"/v1/tenants/{other}/tools/settings")).json()["enabled_tools"] == []
    assert (await api.delete(f"/v1/tenants/{other}/webhooks/crm")).status_code == 404


async def test_invalid_configuration_is_refused(api: httpx.AsyncClient, tenant: str) -> None:
    base = f"/v1/tenants/{tenant}/tools"
    cases = [
        (f"{base}/settings", {"enabled_tools": ["launch_rocket"]}),
        (f"{base}/settings", {"booking_policy": {"timezone": "Mars/Olympus"}}),
        (f"{base}/connections/calendar", {"provider": "stripe", "settings": {}}),
        (f"{base}/connections/payments", {"provider": "stripe", "secrets": {}}),
        (
            f"/v1/tenants/{tenant}/webhooks/crm",
            {"url": "http://127.0.0.1:1/", "event_types": ["Nope"], "secret": "x" * 20},
        ),
    ]
    for url, body in cases:
        response = await api.put(url, json=body)
        assert response.status_code == 422, (url, response.text)


async def test_the_model_is_offered_only_the_tools_that_can_run(
    api: httpx.AsyncClient, tenant: str
) -> None:
    await configure(
        api, tenant, stripe_url="http://127.0.0.1:1", tools=("book_slot", "create_payment_link")
    )

    offered = (await api.get(f"/v1/tenants/{tenant}/tools")).json()

    assert [t["function"]["name"] for t in offered] == ["create_payment_link"]  # no calendar
