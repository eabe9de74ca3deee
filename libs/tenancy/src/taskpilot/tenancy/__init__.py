"""Tenant identity and context, the tenant directory, row-level security, secrets at rest."""

from taskpilot.tenancy.context import (
    TENANT_HEADER,
    NoTenantError,
    current_tenant,
    require_tenant,
    tenant_from_headers,
    tenant_scope,
)
from taskpilot.tenancy.directory import (
    BusinessProfile,
    Tenant,
    TenantDirectory,
    TenantSecrets,
    UnknownTenantError,
)
from taskpilot.tenancy.rls import tenant_transaction
from taskpilot.tenancy.secrets import SecretBox, SecretBoxError, generate_key

__all__ = [
    "TENANT_HEADER",
    "BusinessProfile",
    "NoTenantError",
    "SecretBox",
    "SecretBoxError",
    "Tenant",
    "TenantDirectory",
    "TenantSecrets",
    "UnknownTenantError",
    "current_tenant",
    "generate_key",
    "require_tenant",
    "tenant_from_headers",
    "tenant_scope",
    "tenant_transaction",
]
