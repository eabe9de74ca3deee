"""The WhatsApp Cloud API (Meta's Graph API, or the sandbox stand-in): sends, read marks, media."""

from __future__ import annotations

import json
from typing import Any, Protocol

import httpx

from taskpilot.ingest.media import MediaInfo, MediaTooLargeError


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


class WhatsAppMedia(Protocol):
    """The WhatsApp Cloud API media surface (Meta's Graph API, or the sandbox stand-in)."""

    async def media_info(self, media_id: str, token: str) -> MediaInfo:
        """``GET /{version}/{media_id}``: the short-lived download URL and what Meta knows of
        the file. Raises :class:`GraphApiError` with Meta's ``error.code``."""
        ...

    async def download(self, url: str, token: str, limit: int) -> bytes:
        """``GET url`` with the bearer token. Raises :class:`MediaTooLargeError` as soon as
        more than ``limit`` bytes arrive, :class:`GraphApiError` when the download fails."""
        ...


class GraphApi:
    def __init__(self, client: httpx.AsyncClient, base_url: str, version: str):
        self._client = client
        self._base = base_url.rstrip("/")
        self._version = version

    async def _post(self, phone_number_id: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self._base}/{self._version}/{phone_number_id}/messages"
        return await self._call("POST", url, token, json=body)

    async def _call(self, method: str, url: str, token: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._client.request(
                method, url, headers={"Authorization": f"Bearer {token}"}, **kwargs
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

    async def media_info(self, media_id: str, token: str) -> MediaInfo:
        data = await self._call("GET", f"{self._base}/{self._version}/{media_id}", token)
        try:
            size = data.get("file_size")
            return MediaInfo(
                media_id=str(data.get("id", media_id)),
                url=str(data["url"]),
                mime_type=str(data.get("mime_type") or "application/octet-stream"),
                sha256=str(data["sha256"]) if data.get("sha256") else None,
                file_size=int(size) if size is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GraphApiError(None, 200, f"unreadable media object: {data!r}"[:300]) from exc

    async def download(self, url: str, token: str, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with self._client.stream("GET", url, headers=headers) as response:
                if response.status_code >= 400:
                    body = (await response.aread())[:300].decode(errors="replace")
                    raise GraphApiError(_error_code(body), response.status_code, body)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise MediaTooLargeError(int(declared), limit, "media")
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise MediaTooLargeError(size, limit, "media")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise GraphApiError(None, None, f"download failed: {exc!r}") from exc
        return b"".join(chunks)


def _error_code(body: str) -> int | None:
    try:
        code = json.loads(body).get("error", {}).get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, int) else None
