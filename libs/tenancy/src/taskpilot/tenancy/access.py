"""Who may do what, in which tenant: roles, actions, the principal of a verified credential, and
the shape of API keys. Pure decisions, no I/O; every service's HTTP API uses these."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from taskpilot.contracts.dlq import UNKNOWN_TENANT


class Role(StrEnum):
    OWNER = "owner"
    """Runs the business: everything in their tenant, including set-up and erasure."""
    AGENT = "agent"
    """Answers leads: reads conversations, takes over, replies, hands back; edits FAQs."""
    OPERATOR = "operator"
    """Runs the installation: everything, in every tenant."""


class Action(StrEnum):
    READ = "read"
    CONVERSE = "converse"
    EDIT_KNOWLEDGE = "edit_knowledge"
    CONFIGURE = "configure"
    EXPORT = "export"
    ERASE = "erase"
    HANDLE_DEAD_LETTERS = "handle_dead_letters"
    MANAGE_API_KEYS = "manage_api_keys"
    LIST_TENANTS = "list_tenants"


GRANTS: dict[Role, frozenset[Action]] = {
    Role.AGENT: frozenset({Action.READ, Action.CONVERSE, Action.EDIT_KNOWLEDGE}),
    Role.OWNER: frozenset(set(Action) - {Action.LIST_TENANTS}),
    Role.OPERATOR: frozenset(Action),
}


class NotAuthenticatedError(Exception):
    """No credential, or one that does not verify (bad signature, expired, revoked)."""


class ForbiddenError(Exception):
    """A valid credential that does not allow this action on this tenant."""


@dataclass(frozen=True)
class Principal:
    """Who calls an API, from their verified token or API key."""

    subject: str
    tenant_id: str | None
    roles: frozenset[Role]
    name: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    credential: str | None = field(default=None, compare=False, repr=False)
    """The bearer credential as presented, to forward to sibling services (never logged)."""

    @property
    def is_operator(self) -> bool:
        return Role.OPERATOR in self.roles

    def may(self, action: Action, tenant_id: str) -> bool:
        if not any(action in GRANTS[r] for r in self.roles):
            return False
        if self.is_operator:
            return True
        return tenant_id == self.tenant_id and tenant_id != UNKNOWN_TENANT

    def require(self, action: Action, tenant_id: str) -> None:
        if not self.may(action, tenant_id):
            raise ForbiddenError(f"{action.value} on tenant {tenant_id!r} is not allowed")

    @property
    def agent(self) -> str:
        """How a person is named in the conversation's history (takeover, replies)."""
        return self.name or self.subject


def principal_from_claims(claims: dict[str, Any], tenant_claim: str, roles_claim: str) -> Principal:
    """A principal from verified claims; unknown roles are ignored, no role means no access."""
    raw_roles = claim(claims, roles_claim)
    names = [raw_roles] if isinstance(raw_roles, str) else list(raw_roles or [])
    roles = frozenset(Role(r) for r in names if r in Role.__members__.values())
    if not roles:
        raise ForbiddenError("the token carries no TaskPilot role (owner, agent or operator)")
    tenant = claim(claims, tenant_claim)
    if tenant is None and Role.OPERATOR not in roles:
        raise ForbiddenError(f"the token carries no tenant ({tenant_claim!r} claim)")
    return Principal(
        subject=str(claims.get("sub") or "unknown"),
        tenant_id=None if tenant is None else str(tenant),
        roles=roles,
        name=claims.get("email") or claims.get("name"),
        claims=claims,
    )


def claim(claims: dict[str, Any], path: str) -> Any:
    """A claim by name, or by dotted path into nested objects (``realm_access.roles``)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


# -- API keys -------------------------------------------------------------------------------

API_KEY_PREFIX = "tp_"
API_KEY_ROLES = frozenset({Role.OWNER, Role.AGENT})
"""A key belongs to one tenant; an operator's reach over every tenant is never a key's."""

_API_KEY = re.compile(
    r"tp_(?P<tenant>[A-Za-z0-9_-]{1,64})\.(?P<id>[a-f0-9]{16})\.(?P<secret>[A-Za-z0-9_-]{43})"
)


@dataclass(frozen=True)
class ApiKeyParts:
    """``tp_<tenant>.<key id>.<secret>``: the tenant and id find the row (under the tenant's
    row-level security), the secret is only ever stored as its SHA-256."""

    tenant_id: str
    key_id: str
    secret: str

    @property
    def token(self) -> str:
        return f"{API_KEY_PREFIX}{self.tenant_id}.{self.key_id}.{self.secret}"

    @property
    def secret_hash(self) -> str:
        return hash_secret(self.secret)


def new_api_key(tenant_id: str) -> ApiKeyParts:
    """A fresh key: 64 random bits of id, 256 of secret (no need for a slow hash)."""
    return ApiKeyParts(tenant_id, secrets.token_hex(8), secrets.token_urlsafe(32))


def parse_api_key(token: str) -> ApiKeyParts | None:
    found = _API_KEY.fullmatch(token)
    if found is None:
        return None
    return ApiKeyParts(found["tenant"], found["id"], found["secret"])


def is_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
