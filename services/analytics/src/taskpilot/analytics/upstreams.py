"""The sibling services the dashboard reaches through analytics (adapter): conversation
(timeline, takeover, human replies, hand-back, GDPR), knowledge (FAQs, documents), tools
(configuration), ingest (the sandbox chat's webhooks) and the Graph API sandbox.

Analytics is the dashboard's only door: it checks the token, takes the tenant from the path
it allowed, and calls the sibling on the internal network. The siblings have no
authentication of their own and must not be reachable from outside.
"""

from __future__ import annotations

from typing import Any

import httpx


class UpstreamUnavailableError(Exception):
    """A sibling service did not answer (down, or not configured)."""


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
    ) -> httpx.Response:
        base = self._urls.get(service)
        if not base:
            raise UpstreamUnavailableError(f"{service} is not configured")
        try:
            return await self._client.request(
                method,
                f"{base.rstrip('/')}{path}",
                json=json,
                params={k: v for k, v in (params or {}).items() if v is not None},
                content=content,
                headers=headers,
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            raise UpstreamUnavailableError(f"{service} did not answer: {exc!r}") from exc
