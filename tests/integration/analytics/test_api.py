"""The dashboard API over HTTP: tokens of two tenants, neither sees the other's data through
any endpoint; pagination, filters, figures, the live stream, dead letters, onboarding."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import nats
import pytest

from taskpilot.analytics.domain import Projectable
from taskpilot.contracts import conversation as ev
from taskpilot.runtime.servers import (
    NatsServer,
    create_database,
    drop_database,
    scratch_database_name,
)
from taskpilot.runtime.testing import eventually
from tests.integration.analytics.api_harness import Api, running_analytics, tenant_record
from tests.integration.analytics.conftest import START
from tests.integration.analytics.history import history

pytestmark = pytest.mark.asyncio(loop_scope="session")

ACME, BETA = "acme", "beta"
PUBLIC = {"/v1/auth/config", "/.well-known/jwks.json"}


@pytest.fixture(scope="module")
async def api(
    analytics_nats: NatsServer, postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    name = scratch_database_name()
    url = create_database(postgres_admin_url, name)
    tenants = [tenant_record(ACME, "111111"), tenant_record(BETA, "222222")]
    try:
        async with running_analytics(
            analytics_nats.url, url, tmp_path_factory.mktemp("analytics"), tenants
        ) as api:
            for tenant in (ACME, BETA):
                for event in history(tenant, START):
                    await api.store.apply(cast(Projectable, event))
            yield api
    finally:
        drop_database(postgres_admin_url, name)


async def routes(api: Api) -> list[tuple[str, str]]:
    async with httpx.AsyncClient() as client:
        spec = (await client.get(f"{api.base_url}/openapi.json")).json()
    return [
        (method.upper(), path)
        for path, methods in spec["paths"].items()
        for method in methods
        if path not in PUBLIC
    ]


def fill(path: str, tenant: str) -> str:
    return re.sub(r"\{[a-z_]+\}", "x", path.replace("{tenant_id}", tenant)).replace(
        "/leads/x", "/leads/34600000001"
    )


async def test_every_route_needs_a_token(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.base_url) as client:
        for method, path in await routes(api):
            response = await client.request(method, fill(path, ACME), json={})
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            bad = await client.request(
                method, fill(path, ACME), json={}, headers={"Authorization": "Bearer nope"}
            )
            assert bad.status_code == 401, (method, path)


async def test_no_route_lets_one_tenant_reach_another(api: Api) -> None:
    api.siblings.calls.clear()
    tenant_routes = [(m, p) for m, p in await routes(api) if "{tenant_id}" in p]
    assert len(tenant_routes) > 30
    async with httpx.AsyncClient(base_url=api.base_url) as client:
        for role in ("owner", "agent"):
            for method, path in tenant_routes:
                response = await client.request(
                    method, fill(path, ACME), json={}, headers=api.headers(BETA, role)
                )
                assert response.status_code == 403, (role, method, path, response.text)
    assert api.siblings.calls == []  # nothing was forwarded for the wrong tenant


async def conversations(api: Api, tenant: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api.base_url) as client:
        return await client.get(
            f"/v1/tenants/{tenant}/conversations", params=params, headers=api.headers(tenant)
        )


async def test_lists_details_search_and_export_hold_only_the_callers_rows(api: Api) -> None:
    acme = (await conversations(api, ACME)).json()
    beta = (await conversations(api, BETA)).json()
    assert len(acme) == len(beta) == 4  # the erased lead is gone
    assert not {c["conversation_id"] for c in acme} & {c["conversation_id"] for c in beta}
    async with httpx.AsyncClient(base_url=api.base_url) as client:
        mine = await client.get(
            f"/v1/tenants/{ACME}/conversations/{acme[0]['conversation_id']}",
            headers=api.headers(ACME),
        )
        assert mine.status_code == 200 and mine.json()["messages"]
        theirs = await client.get(
            f"/v1/tenants/{ACME}/conversations/{beta[0]['conversation_id']}",
            headers=api.headers(ACME),
        )
        assert theirs.status_code == 404
        exported = await client.get(
            f"/v1/tenants/{ACME}/conversations/export", headers=api.headers(ACME)
        )
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert {r["conversation_id"] for r in rows} == {c["conversation_id"] for c in acme}
        ndjson = await client.get(
            f"/v1/tenants/{ACME}/conversations/export",
            params={"format": "ndjson"},
            headers=api.headers(ACME),
        )
        assert len(ndjson.text.splitlines()) == 4
        agent_export = await client.get(
            f"/v1/tenants/{ACME}/conversations/export", headers=api.headers(ACME, "agent")
        )
        assert agent_export.status_code == 403  # exports are for owners
        letters = await client.get(f"/v1/tenants/{ACME}/dead-letters", headers=api.headers(ACME))
        beta_letters = await client.get(
            f"/v1/tenants/{BETA}/dead-letters", headers=api.headers(BETA)
        )
        assert not {d["id"] for d in letters.json()} & {d["id"] for d in beta_letters.json()}
        operator = await client.get(
            f"/v1/tenants/{BETA}/conversations", headers=api.headers(None, "operator")
        )
        assert len(operator.json()) == 4  # operators may act across tenants
    # A text only the other tenant's lead wrote is not found.
    await api.store.apply(lead_writes(BETA, "34699999999", "zebra-marker", 900))
    assert (await conversations(api, BETA, q="zebra-marker")).json()
    assert (await conversations(api, ACME, q="zebra-marker")).json() == []


def lead_writes(tenant: str, lead: str, text: str, sequence: int) -> ev.LeadMessageReceived:
    return ev.LeadMessageReceived(
        tenant_id=tenant,
        correlation_id="w",
        conversation_id=f"{tenant}-{lead}",
        lead=lead,
        sequence=sequence,
        wamid=f"wamid.{tenant}.{lead}.{sequence}",
        kind="text",
        text=text,
    )


async def test_pages_and_filters(api: Api) -> None:
    everything = (await conversations(api, ACME, limit=500)).json()
    seen, cursor = [], None
    while True:
        response = await conversations(api, ACME, limit=2, **({"cursor": cursor} if cursor else {}))
        seen += [c["conversation_id"] for c in response.json()]
        cursor = response.headers.get("x-next-cursor")
        if not cursor:
            break
        assert 'rel="next"' in response.headers["link"]
    assert seen == [c["conversation_id"] for c in everything]
    handed = (await conversations(api, ACME, handed_off="true")).json()
    assert [c["lead"] for c in handed] == ["34600000003"]
    closed = (await conversations(api, ACME, status="closed")).json()
    assert {c["lead"] for c in closed} >= {"34600000001"}  # its lead wrote long ago
    assert (await conversations(api, ACME, cursor="garbage")).status_code == 400
    assert (await conversations(api, ACME, status="sleeping")).status_code == 422


async def test_the_summary_has_every_figure(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.base_url) as client:
        params = {"since": "2026-11-01T00:00:00Z", "until": "2026-11-03T00:00:00Z"}
        summary = (
            await client.get(
                f"/v1/tenants/{ACME}/analytics/summary", params=params, headers=api.headers(ACME)
            )
        ).json()
        series = (
            await client.get(
                f"/v1/tenants/{ACME}/analytics/timeseries",
                params={**params, "bucket": "hour", "tz": "Europe/Madrid"},
                headers=api.headers(ACME),
            )
        ).json()
    assert summary["conversations"] == 4
    assert summary["handoff_rate"] == 0.25 and summary["resolution_rate"] == 0.75
    assert summary["first_response_ms"]["p50"] is not None
    assert summary["reply_ms"]["p95"] >= summary["reply_ms"]["p50"]
    assert summary["cost_usd"] == pytest.approx(0.013)
    assert summary["cache_hit_rate"] == pytest.approx(1 / 7)
    assert summary["bookings"]["bookings"] == 2 and summary["bookings"]["cancelled"] == 1
    assert summary["revenue"] == [{"currency": "EUR", "payments": 1, "amount_minor": 4000}]
    assert summary["cost_per_booking_usd"] == pytest.approx(0.0065)
    assert {t["tier"] for t in summary["by_tier"]} == {"L0", "L1", "L2", "L3", "fallback", "human"}
    assert summary["dead_letters"]["open"] == 2
    assert summary["events"]["ConversationHandedOff"] == 1
    assert series["messages"] and series["tiers"] and series["conversations"]


async def test_the_live_stream_carries_only_the_callers_conversations(api: Api) -> None:
    received: list[tuple[str, dict[str, Any]]] = []
    ready = asyncio.Event()

    async def listen() -> None:
        async with httpx.AsyncClient(base_url=api.base_url, timeout=60) as client:
            async with client.stream(
                "GET", f"/v1/tenants/{ACME}/stream", headers=api.headers(ACME, "agent")
            ) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                event = None
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event:
                        received.append((event, json.loads(line[6:])))
                        if event == "ready":
                            ready.set()

    task = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(ready.wait(), 10)
        await api.store.apply(lead_writes(BETA, "34611111111", "beta secret", 1))
        await api.store.apply(lead_writes(ACME, "34622222222", "acme hello", 1))

        async def acme_seen() -> bool:
            return any(e == "conversation" for e, _ in received)

        await eventually(acme_seen, timeout=10, what="acme's change on acme's stream")
    finally:
        task.cancel()
    changes = [d for e, d in received if e == "conversation"]
    assert {d["tenant_id"] for d in changes} == {ACME}
    assert changes[0]["conversation"]["last_text"] == "acme hello"
    assert changes[0]["conversation"]["status"] == "bot"
    async with httpx.AsyncClient(base_url=api.base_url) as client:
        other = await client.get(f"/v1/tenants/{ACME}/stream", headers=api.headers(BETA))
        assert other.status_code == 403


async def test_dead_letters_are_inspected_replayed_and_discarded(api: Api) -> None:
    nc = await nats.connect(api.nats_url)
    republished: list[Any] = []

    async def collect(msg: Any) -> None:
        republished.append(msg)

    await nc.subscribe(f"wa.in.{ACME}.>", cb=collect)
    headers = api.headers(ACME)
    try:
        async with httpx.AsyncClient(base_url=api.base_url) as client:
            base = f"/v1/tenants/{ACME}/dead-letters"
            letters = {d["reason"]: d for d in (await client.get(base, headers=headers)).json()}
            poison, webhook = letters["max_deliveries"], letters["malformed_webhook"]
            detail = (await client.get(f"{base}/{poison['id']}", headers=headers)).json()
            assert detail["payload"] and detail["headers"]["Nats-Msg-Id"] == "wamid.x"
            as_agent = await client.post(
                f"{base}/{poison['id']}/replay", headers=api.headers(ACME, "agent")
            )
            assert as_agent.status_code == 403
            first = (await client.post(f"{base}/{poison['id']}/replay", headers=headers)).json()
            second = (await client.post(f"{base}/{poison['id']}/replay", headers=headers)).json()
            assert first["subject"] == f"wa.in.{ACME}.34600000009.message"
            assert first["msg_id"] != second["msg_id"]
            await eventually(
                lambda: _true(len(republished) == 2), timeout=5, what="both replays published"
            )
            assert republished[0].data == poison["payload"].encode()
            assert republished[0].headers["Nats-Msg-Id"] == first["msg_id"]
            unreplayable = await client.post(f"{base}/{webhook['id']}/replay", headers=headers)
            assert unreplayable.status_code == 409
            assert (await client.post(f"{base}/{webhook['id']}/discard", headers=headers)).json()
            again = await client.post(f"{base}/{webhook['id']}/discard", headers=headers)
            assert again.status_code == 409
            open_now = (await client.get(base, params={"status": "open"}, headers=headers)).json()
            assert open_now == []
            replayed = (await client.get(f"{base}/{poison['id']}", headers=headers)).json()
            assert (replayed["status"], replayed["replays"]) == ("replayed", 2)
            assert [a["action"] for a in replayed["actions"]] == ["replayed", "replayed"]
            missing = await client.get(f"{base}/{BETA}-nope", headers=headers)
            assert missing.status_code == 404
    finally:
        await nc.close()


async def _true(value: bool) -> bool:
    return value


async def test_onboarding_a_tenant(api: Api) -> None:
    gamma = "gamma"
    operator, owner = api.headers(None, "operator"), api.headers(gamma)
    async with httpx.AsyncClient(base_url=api.base_url) as client:
        refused = await client.post(
            "/v1/tenants", json={"id": gamma, "name": "Gamma"}, headers=api.headers(ACME)
        )
        assert refused.status_code == 403  # an owner creates only the tenant their token names
        created = await client.post(
            "/v1/tenants", json={"id": gamma, "name": "Gamma Studio"}, headers=owner
        )
        assert created.status_code == 201, created.text
        assert created.json()["whatsapp_connected"] is False
        twice = await client.post("/v1/tenants", json={"id": gamma, "name": "G"}, headers=operator)
        assert twice.status_code == 409
        number = {
            "phone_number_id": "333333",
            "access_token": "EAAG-secret",
            "app_secret": "gamma-app-secret",
            "verify_token": "gamma-verify-123",
        }
        connected = await client.put(f"/v1/tenants/{gamma}/whatsapp", json=number, headers=owner)
        assert (
            connected.json()["webhook_url"] == "https://hooks.example.com/webhooks/whatsapp/gamma"
        )
        assert connected.json()["verify_token"] == "gamma-verify-123"
        taken = await client.put(
            f"/v1/tenants/{ACME}/whatsapp", json=number, headers=api.headers(ACME)
        )
        assert taken.status_code == 409  # already gamma's number
        profile = {
            "name": "Gamma Studio",
            "timezone": "Europe/Lisbon",
            "languages": ["pt", "en"],
            "tone": "warm",
            "greeting_template": "Olá! Welcome to {name}.",
        }
        view = await client.put(f"/v1/tenants/{gamma}/profile", json=profile, headers=owner)
        assert view.json()["profile"]["timezone"] == "Europe/Lisbon"
        budget = await client.put(
            f"/v1/tenants/{gamma}/budget", json={"monthly_usd": 25}, headers=owner
        )
        assert budget.json() == {"monthly_usd": 25.0, "near_share": 0.8}
        shown = (await client.get(f"/v1/tenants/{gamma}", headers=owner)).json()
        assert shown["phone_number_ids"] == ["333333"] and "secrets" not in shown
        assert "gamma-app-secret" not in json.dumps(shown)
        as_agent = await client.put(
            f"/v1/tenants/{gamma}/budget",
            json={"monthly_usd": 1},
            headers=api.headers(gamma, "agent"),
        )
        assert as_agent.status_code == 403
        listed = (await client.get("/v1/tenants", headers=operator)).json()
        assert {ACME, BETA, gamma} <= set(listed)
        assert (await client.get("/v1/tenants", headers=owner)).json() == [gamma]


async def test_the_gateway_acts_as_the_token_says(api: Api) -> None:
    api.siblings.calls.clear()
    headers = {"Authorization": f"Bearer {api.token(ACME, 'agent', name='maria@acme')}"}
    async with httpx.AsyncClient(base_url=api.base_url) as client:
        base = f"/v1/tenants/{ACME}/conversations/c-1"
        await client.post(f"{base}/takeover", json={"agent": "someone-else"}, headers=headers)
        await client.post(f"{base}/messages", json={"text": "Hi, Maria here"}, headers=headers)
        await client.post(f"{base}/release", headers=headers)
        await client.post(
            f"/v1/tenants/{ACME}/knowledge/faqs",
            json={"question": "q?", "answer": "a"},
            headers=headers,
        )
        sandbox = await client.post(
            f"/v1/tenants/{ACME}/sandbox/messages",
            json={"lead": "34600000077", "text": "hola"},
            headers=headers,
        )
        assert sandbox.status_code == 202
    calls = api.siblings.calls
    assert [(c["method"], c["path"]) for c in calls] == [
        ("POST", f"/v1/tenants/{ACME}/conversations/c-1/takeover"),
        ("POST", f"/v1/tenants/{ACME}/conversations/c-1/messages"),
        ("POST", f"/v1/tenants/{ACME}/conversations/c-1/release"),
        ("POST", f"/v1/tenants/{ACME}/faqs"),
        ("POST", f"/webhooks/whatsapp/{ACME}"),
    ]
    assert json.loads(calls[0]["body"]) == {"agent": "maria@acme"}  # not the body's agent
    assert json.loads(calls[1]["body"]) == {"agent": "maria@acme", "text": "Hi, Maria here"}
    webhook = json.loads(calls[4]["body"])
    assert webhook["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] == "111111"
    assert calls[4]["headers"]["x-hub-signature-256"].startswith("sha256=")
    # The caller's own credential goes on, for the sibling to check again; never to Meta's edge.
    assert {c["headers"]["authorization"] for c in calls[:4]} == {headers["Authorization"]}
    assert "authorization" not in calls[4]["headers"]


async def test_queries_go_to_the_read_replica(
    analytics_nats: NatsServer, postgres_admin_url: str, tmp_path: Path
) -> None:
    primary, replica = scratch_database_name(), scratch_database_name()
    primary_url = create_database(postgres_admin_url, primary)
    replica_url = create_database(postgres_admin_url, replica)
    try:
        # The "replica" is a database whose rows differ, so the answer shows which one was read.
        async with running_analytics(
            analytics_nats.url, replica_url, tmp_path / "r", [tenant_record(ACME, "1")]
        ) as on_replica:
            await on_replica.store.apply(lead_writes(ACME, "34600000042", "from the replica", 1))
        async with running_analytics(
            analytics_nats.url,
            primary_url,
            tmp_path / "p",
            [tenant_record(ACME, "1")],
            read_database_url=replica_url,
        ) as api:
            await api.store.apply(lead_writes(ACME, "34600000043", "on the primary", 1))
            rows = (await conversations(api, ACME)).json()
            assert [r["last_text"] for r in rows] == ["from the replica"]
    finally:
        drop_database(postgres_admin_url, primary)
        drop_database(postgres_admin_url, replica)
