"""Credentials for tests: a local issuer of the test's own, whose key set services under test
are given inline (``local_jwks=inline_jwks(issuer)``), and the headers that carry its tokens."""

from __future__ import annotations

import json

from taskpilot.tenancy.tokens import LocalIssuer


def inline_jwks(issuer: LocalIssuer) -> str:
    """The value of ``TASKPILOT_AUTH_JWKS`` (or the ``local_jwks`` setting) for ``issuer``."""
    return json.dumps(issuer.jwks())


def bearer(issuer: LocalIssuer, tenant: str | None, role: str = "owner") -> dict[str, str]:
    """An ``Authorization`` header with a token of ``role`` in ``tenant`` (operators: None)."""
    token = issuer.issue(tenant_id=tenant, roles=[role], subject=f"test-{role}-{tenant}")
    return {"Authorization": f"Bearer {token}"}


def operator(issuer: LocalIssuer) -> dict[str, str]:
    """The header of an operator, who may act on every tenant (what the harnesses use)."""
    return bearer(issuer, None, "operator")
