"""Which addresses a tenant-given URL may reach.

Tenants point the service at their own CalDAV server, workflow webhooks and event receivers.
In a shared installation those URLs must not reach the installation's own network (NATS,
PostgreSQL, cloud metadata): a URL whose host resolves to a loopback, private, link-local or
otherwise non-global address is refused unless the operator allows private targets (a
single-business install with n8n or Nextcloud next door). Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from taskpilot.tools.adapters.errors import ProviderRejectedError, ProviderUnavailableError


def check_target(provider: str, url: str, allow_private: bool) -> None:
    """Raise ProviderRejectedError when ``url`` may not be reached (blocking DNS lookup)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProviderRejectedError(provider, "only http(s) URLs with a host are allowed")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ProviderUnavailableError(provider, f"cannot resolve {parts.hostname}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise ProviderRejectedError(
                provider, f"{parts.hostname} resolves to a non-public address"
            )


async def ensure_target(provider: str, url: str, allow_private: bool) -> None:
    if not allow_private:
        await asyncio.to_thread(check_target, provider, url, allow_private)
    else:
        check_target(provider, url, allow_private)
