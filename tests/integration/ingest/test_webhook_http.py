"""Ingest's webhook over real HTTP: the answers Meta gets, status by status, and the document
that describes them (the POST is served outside FastAPI's routing, see ingest's api.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from taskpilot.ingest.meta import signed, text_webhook
from tests.integration.ingest.tenant import MAX_BODY, NUMBER, SECRET, TENANT, VERIFY

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def client(ingest_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as client:
        yield client


def hook(tenant: str = TENANT) -> str:
    return f"/webhooks/whatsapp/{tenant}"


async def test_a_signed_webhook_is_acknowledged_once_stored(client: httpx.AsyncClient) -> None:
    body, headers = signed(text_webhook(NUMBER, "34600000001", "hola"), SECRET)

    response = await client.post(hook(), content=body, headers=headers)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"published": 1, "duplicates": 0, "dead_lettered": 0}
    again = await client.post(hook(), content=body, headers=headers)
    assert again.json() == {"published": 0, "duplicates": 1, "dead_lettered": 0}


@pytest.mark.parametrize(
    "signature", [None, b"sha256=" + b"0" * 64, b"sha1=abc", "sha256=ñ".encode("latin-1")]
)
async def test_a_missing_or_wrong_signature_is_401(
    client: httpx.AsyncClient, signature: bytes | None
) -> None:
    body, _ = signed(text_webhook(NUMBER, "34600000002", "hola"), SECRET)
    headers = {b"Content-Type": b"application/json"}
    if signature is not None:
        headers[b"X-Hub-Signature-256"] = signature

    response = await client.post(hook(), content=body, headers=headers)

    assert response.status_code == 401 and "X-Hub-Signature-256" in response.json()["detail"]


async def test_an_unknown_tenant_is_404(client: httpx.AsyncClient) -> None:
    body, headers = signed(text_webhook(NUMBER, "34600000003", "hola"), SECRET)

    response = await client.post(hook("nobody"), content=body, headers=headers)

    assert (response.status_code, response.json()) == (404, {"detail": "unknown tenant"})


async def test_a_tenant_id_that_cannot_be_one_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(hook("a%20b"), content=b"{}")

    assert response.status_code == 422


async def test_a_body_over_the_limit_is_413_declared_or_streamed(
    client: httpx.AsyncClient,
) -> None:
    big = b"{" + b" " * MAX_BODY + b"}"
    declared = await client.post(hook(), content=big)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(MAX_BODY // 1024 + 2):
            yield b" " * 1024

    streamed = await client.post(hook(), content=chunks())

    assert declared.status_code == streamed.status_code == 413


async def test_a_signed_body_that_is_not_a_webhook_is_200_and_dead_lettered(
    client: httpx.AsyncClient,
) -> None:
    body, headers = signed(b"not json at all", SECRET)

    response = await client.post(hook(), content=body, headers=headers)

    assert response.status_code == 200 and response.json()["dead_lettered"] == 1


async def test_other_paths_and_methods_go_to_fastapi(client: httpx.AsyncClient) -> None:
    assert (await client.post(f"{hook()}/extra", content=b"{}")).status_code == 404
    assert (await client.put(hook(), content=b"{}")).status_code == 405
    verified = await client.get(
        hook(),
        params={"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"},
    )
    assert (verified.status_code, verified.text) == (200, "1158201444")


async def test_the_openapi_document_describes_the_webhook_post(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()

    post = document["paths"]["/webhooks/whatsapp/{tenant_id}"]["post"]
    assert set(post["responses"]) == {"200", "401", "404", "413", "422"}
    assert "get" in document["paths"]["/webhooks/whatsapp/{tenant_id}"]
    schemas = document["components"]["schemas"]
    assert {"Accepted", "Problem", "WhatsAppWebhook"} <= set(schemas)
