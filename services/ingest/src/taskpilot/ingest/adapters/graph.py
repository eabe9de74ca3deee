"""The WhatsApp Cloud API (Meta's Graph API, or the sandbox stand-in): sends, read marks, media.

Two calls per lead message (the read mark and the reply) go through here, so the client is
aiohttp's: about 0.15 ms of CPU per call against httpx's 1.2-1.3 ms on this machine (ADR 13).
Timeouts apply per step (connecting, each read), as httpx's did, not to a whole download.
Redirects are not followed (Graph does not redirect; httpx did not either).
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


_ERROR_BODY_MAX = 64 * 1024

Proxy = tuple[str | None, aiohttp.BasicAuth | None]


def proxy_for(url: str) -> Proxy:
    """The proxy ``HTTP_PROXY`` / ``HTTPS_PROXY`` name for ``url`` unless ``NO_PROXY`` exempts
    it: for deployments behind an egress proxy. aiohttp reads these (and ``~/.netrc`` for the
    proxy's credentials); the proxy itself must be an ``http://`` URL, and ``ALL_PROXY`` is
    not read. :class:`GraphApi` asks once per host, not per request as aiohttp's
    ``trust_env`` does (in a worker thread, on every request)."""
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
        self._proxies: dict[tuple[str, str], Proxy] = {}

    @classmethod
    def session(cls, timeout_s: float) -> aiohttp.ClientSession:
        """The client session to pass in (create it on the running loop; close it on stop).
        ``timeout_s`` bounds getting a connection and each read, not a whole download; no
        cookies are kept (one session serves every tenant)."""
        timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout_s, sock_connect=timeout_s, sock_read=timeout_s
        )
        return aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar())

    def _proxy(self, url: str) -> Proxy:
        target = URL(url)
        key = (target.scheme, target.host or "")
        if key not in self._proxies:
            self._proxies[key] = proxy_for(url)
        return self._proxies[key]

    async def _post(self, phone_number_id: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self._base}/{self._version}/{phone_number_id}/messages"
        return await self._call("POST", url, token, json=body)

    async def _call(self, method: str, url: str, token: str, **kwargs: Any) -> dict[str, Any]:
        proxy, proxy_auth = self._proxy(url)
        try:
            async with self._client.request(
                method,
                url,
                headers={"Authorization": f"Bearer {token}"},
                proxy=proxy,
                proxy_auth=proxy_auth,
                allow_redirects=False,
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
        if status >= 300 or "error" in data:  # 3xx: not followed, so no answer either
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
        proxy, proxy_auth = self._proxy(url)  # the media host is not the API's
        try:
            async with self._client.get(
                url, headers=headers, proxy=proxy, proxy_auth=proxy_auth, allow_redirects=False
            ) as response:
                if response.status >= 300:  # an error, or a redirect we do not follow
                    raw = bytearray()
                    async for chunk in response.content.iter_chunked(16 * 1024):
                        raw += chunk
                        if len(raw) >= _ERROR_BODY_MAX:
                            break
                    body = raw.decode(errors="replace")
                    raise GraphApiError(_error_code(body), response.status, body[:300])
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
