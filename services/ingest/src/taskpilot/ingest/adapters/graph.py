"""The WhatsApp Cloud API (Meta's Graph API, or the sandbox stand-in): sends, read marks, media.

Two calls per lead message (the read mark and the reply) go through here, so the client is
aiohttp's: about 0.15 ms of CPU per call against httpx's 1.2-1.3 ms on this machine (httpx
checks every pooled connection for expiry on each request; ADR 13).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

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


# What a call that never got Meta's answer raises: refused or dropped connections, timeouts.
_TRANSIENT = (aiohttp.ClientError, asyncio.TimeoutError)


def proxy_for(url: str) -> tuple[str | None, aiohttp.BasicAuth | None]:
    """The proxy ``HTTP_PROXY`` / ``HTTPS_PROXY`` name for ``url`` unless ``NO_PROXY`` exempts
    it (as curl and httpx read them): for deployments behind an egress proxy. Read once per
    host here, not per request (aiohttp's ``trust_env`` reads it, and ``~/.netrc``, in a
    worker thread on every request)."""
    try:
        proxy, auth = get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None
    return str(proxy), auth


class GraphApi:
    def __init__(self, client: aiohttp.ClientSession, base_url: str, version: str):
        self._client = client
        self._base = base_url.rstrip("/")
        self._version = version
        self._proxy, self._proxy_auth = proxy_for(self._base)

    @classmethod
    def session(cls, timeout_s: float) -> aiohttp.ClientSession:
        """The client session to pass in (create it on the running loop; close it on stop)."""
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def _post(self, phone_number_id: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self._base}/{self._version}/{phone_number_id}/messages"
        return await self._call("POST", url, token, json=body)

    async def _call(self, method: str, url: str, token: str, **kwargs: Any) -> dict[str, Any]:
        try:
            async with self._client.request(
                method,
                url,
                headers={"Authorization": f"Bearer {token}"},
                proxy=self._proxy,
                proxy_auth=self._proxy_auth,
                **kwargs,
            ) as response:
                status = response.status
                raw = await response.read()
        except _TRANSIENT as exc:  # timeouts, refused connections: transient
            raise GraphApiError(None, None, repr(exc)) from exc
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            data = {}
        if status >= 400 or "error" in data:
            error = data.get("error") or {}
            raise GraphApiError(
                error.get("code"),
                status,
                str(error.get("message", raw[:200].decode(errors="replace"))),
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
            proxy, proxy_auth = proxy_for(url)  # the media host is not the API's
            async with self._client.get(
                url, headers=headers, proxy=proxy, proxy_auth=proxy_auth
            ) as response:
                if response.status >= 400:
                    body = (await response.content.read(300)).decode(errors="replace")
                    raise GraphApiError(_error_code(body), response.status, body)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise MediaTooLargeError(int(declared), limit, "media")
                async for chunk in response.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise MediaTooLargeError(size, limit, "media")
                    chunks.append(chunk)
        except _TRANSIENT as exc:
            raise GraphApiError(None, None, f"download failed: {exc!r}") from exc
        return b"".join(chunks)


def _error_code(body: str) -> int | None:
    try:
        code = json.loads(body).get("error", {}).get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, int) else None
