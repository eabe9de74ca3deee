"""The tenant a piece of work runs for, carried in a contextvar.

Set from message headers (``Tenant-Id``) by the consumer runtime and from JWT claims by the
HTTP edge; read by logging, metrics and the row-level-security helper.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

TENANT_HEADER = "Tenant-Id"

_current: ContextVar[str | None] = ContextVar("taskpilot_tenant", default=None)


class NoTenantError(RuntimeError):
    """Tenant-scoped work was attempted outside any tenant context."""


def current_tenant() -> str | None:
    return _current.get()


def require_tenant() -> str:
    tenant = _current.get()
    if tenant is None:
        raise NoTenantError("no tenant in context")
    return tenant


@contextmanager
def tenant_scope(tenant_id: str) -> Iterator[str]:
    token = _current.set(tenant_id)
    try:
        yield tenant_id
    finally:
        _current.reset(token)


def tenant_from_headers(headers: Mapping[str, str] | None) -> str | None:
    return (headers or {}).get(TENANT_HEADER)
