"""Dashboard authentication: the shared token verification of :mod:`taskpilot.tenancy.tokens`
(OIDC provider via its JWKS, the built-in local issuer, API keys), under the names analytics
has always exported. With a provider configured, set ``TASKPILOT_ANALYTICS_LOCAL_ISSUER=false``.
"""

from taskpilot.tenancy.tokens import (
    LEEWAY_S,
    LOCAL_AUDIENCE,
    LOCAL_ISSUER,
    IdentityProviderUnavailableError,
    KeySource,
    LocalIssuer,
    RemoteKeys,
    StaticKeys,
    TokenVerifier,
)

__all__ = [
    "LEEWAY_S",
    "LOCAL_AUDIENCE",
    "LOCAL_ISSUER",
    "IdentityProviderUnavailableError",
    "KeySource",
    "LocalIssuer",
    "RemoteKeys",
    "StaticKeys",
    "TokenVerifier",
]
