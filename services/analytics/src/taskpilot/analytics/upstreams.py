"""The sibling services the dashboard reaches through analytics (adapter): conversation
(timeline, takeover, human replies, hand-back, GDPR), knowledge (FAQs, documents), tools
(configuration), ingest (the sandbox chat's webhooks) and the Graph API sandbox.

Analytics is the dashboard's door: it checks the token, takes the tenant from the path it
allowed, and calls the sibling with the caller's own credential, which the sibling checks
again (defence in depth: a sibling reached directly refuses what analytics would).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from taskpilot.runtime.auth import forwarded
from taskpilot.tenancy.access import Principal


class UpstreamUnavailableError(Exception):
    """A sibling service did not answer (down, or not configured)."""


class NoSuchPathError(LookupError):
    """A path built from the caller's values that would leave the route it was built for."""


def sibling_path(path: str) -> str:
    """``path`` as the caller gave its values (percent-encoded again); no ``.``/``..`` segment,
    which a client would resolve into another route (or another tenant's)."""
    if any(part in (".", "..") for part in path.split("/")):
        raise NoSuchPathError(path)
    return quote(path, safe="/")


class Upstreams:
    def __init__(self, client: httpx.AsyncClient, urls: dict[str, str | None]):
        self._client = client
        self._urls = urls

    def configured(self, service: str) -> bool:
        return bool(self._urls.get(service))

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        caller: Principal | None = None,
    ) -> httpx.Response:
        """``caller``'s credential goes along, so the sibling authorises the call itself."""
        base = self._urls.get(service)
        if not base:
            raise UpstreamUnavailableError(f"{service} is not configured")
        try:
            return await self._client.request(
                method,
                f"{base.rstrip('/')}{sibling_path(path)}",
                json=json,
                params={k: v for k, v in (params or {}).items() if v is not None},
                content=content,
                headers={**(headers or {}), **(forwarded(caller) if caller else {})},
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            raise UpstreamUnavailableError(f"{service} did not answer: {exc!r}") from exc
