"""Ingest's I/O: the Graph API client and the ledger of sends already made."""

from __future__ import annotations

from typing import Any, Protocol

import httpx
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue


class GraphApiError(Exception):
    """Meta answered with an error object (decisions are made on ``code``, not the status)."""

    def __init__(self, code: int | None, http_status: int | None, message: str):
        super().__init__(f"Graph API error {code} (HTTP {http_status}): {message}")
        self.code = code
        self.http_status = http_status
        self.message = message


class WhatsAppApi(Protocol):
    """The WhatsApp Cloud API send surface (Meta's Graph API, or the sandbox stand-in)."""

    async def send(self, phone_number_id: str, token: str, body: dict[str, Any]) -> str:
        """Send a ``/messages`` body (text, interactive, template); returns Meta's wamid.

        Raises :class:`GraphApiError` with Meta's ``error.code``."""
        ...

    async def mark_read(self, phone_number_id: str, token: str, wamid: str, typing: bool) -> None:
        """Mark an inbound message read, optionally showing the typing indicator."""
        ...


class GraphApi:
    def __init__(self, client: httpx.AsyncClient, base_url: str, version: str):
        self._client = client
        self._base = base_url.rstrip("/")
        self._version = version

    async def _post(self, phone_number_id: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self._base}/{self._version}/{phone_number_id}/messages"
        try:
            response = await self._client.post(
                url, json=body, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:  # timeouts, refused connections: transient
            raise GraphApiError(None, None, repr(exc)) from exc
        try:
            data: dict[str, Any] = response.json()
        except ValueError:
            data = {}
        if response.status_code >= 400 or "error" in data:
            error = data.get("error") or {}
            raise GraphApiError(
                error.get("code"),
                response.status_code,
                str(error.get("message", response.text[:200])),
            )
        return data

    async def send(self, phone_number_id: str, token: str, body: dict[str, Any]) -> str:
        data = await self._post(phone_number_id, token, body)
        try:
            return str(data["messages"][0]["id"])
        except (KeyError, IndexError, TypeError) as exc:
            raise GraphApiError(None, 200, f"no message id in response: {data!r}") from exc

    async def mark_read(self, phone_number_id: str, token: str, wamid: str, typing: bool) -> None:
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": wamid,
        }
        if typing:
            body["typing_indicator"] = {"type": "text"}
        await self._post(phone_number_id, token, body)


class SendLedger:
    """Command id -> wamid of sends Meta accepted (JetStream KV), so a redelivered command
    never reaches Meta twice."""

    BUCKET = "ingest_sends"

    def __init__(self, kv: KeyValue):
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> SendLedger:
        try:
            kv = await js.key_value(cls.BUCKET)
        except Exception:
            kv = await js.create_key_value(bucket=cls.BUCKET, history=1)
        return cls(kv)

    async def wamid_of(self, command_id: str) -> str | None:
        try:
            entry = await self._kv.get(command_id)
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    async def record(self, command_id: str, wamid: str) -> None:
        await self._kv.put(command_id, wamid.encode())
