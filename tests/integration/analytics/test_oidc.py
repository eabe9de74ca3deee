"""Tokens of an OIDC provider, verified with the JWKS it serves over HTTP (a stand-in provider
on loopback: Auth0-style namespaced tenant claim, Keycloak-style nested roles)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm

from taskpilot.analytics.auth import IdentityProviderUnavailableError, TokenVerifier
from taskpilot.analytics.domain import ForbiddenError, NotAuthenticatedError, Role
from taskpilot.runtime.servers import free_port
from tests.integration.analytics.api_harness import serving

pytestmark = pytest.mark.asyncio(loop_scope="session")

TENANT_CLAIM = "https://taskpilot.dev/tenant"


def provider(key: rsa.RSAPrivateKey, kid: str, issuer: str) -> FastAPI:
    app = FastAPI()
    public = {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}

    @app.get("/.well-known/openid-configuration")
    async def discovery() -> dict[str, Any]:
        return {"issuer": issuer, "jwks_uri": f"{issuer}keys"}

    @app.get("/keys")
    async def jwks() -> dict[str, Any]:
        return {"keys": [public]}

    return app


def token(key: rsa.RSAPrivateKey, kid: str, issuer: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": issuer, "aud": "taskpilot", "sub": "auth0|42", "iat": now, "exp": now + 600}
    return jwt.encode({**body, **claims}, key, algorithm="RS256", headers={"kid": kid})


async def test_provider_tokens_are_verified_with_its_jwks() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    port = free_port()
    issuer = f"http://127.0.0.1:{port}/"
    async with serving(provider(key, "k1", issuer), port):
        verifier = TokenVerifier(
            local=None,
            oidc_issuer=issuer,  # its keys are found through the discovery document
            oidc_audience="taskpilot",
            tenant_claim=TENANT_CLAIM,
            roles_claim="realm_access.roles",
        )
        good = token(key, "k1", issuer, **{TENANT_CLAIM: "acme"}, realm_access={"roles": ["owner"]})
        principal = await verifier.principal(good)
        assert (principal.tenant_id, principal.roles) == ("acme", frozenset({Role.OWNER}))

        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = token(other_key, "k1", issuer, **{TENANT_CLAIM: "acme"})
        wrong_audience = token(key, "k1", issuer, aud="someone-else", **{TENANT_CLAIM: "acme"})
        other_issuer = token(key, "k1", "https://evil.example/", **{TENANT_CLAIM: "acme"})
        for bad in (forged, wrong_audience, other_issuer):
            with pytest.raises(NotAuthenticatedError):
                await verifier.principal(bad)
        no_role = token(key, "k1", issuer, **{TENANT_CLAIM: "acme"})
        with pytest.raises(ForbiddenError):
            await verifier.principal(no_role)


async def test_an_unreachable_provider_is_unavailable_not_a_bad_token() -> None:
    issuer = f"http://127.0.0.1:{free_port()}/"  # nobody listens
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    verifier = TokenVerifier(local=None, oidc_issuer=issuer, oidc_audience="taskpilot")
    with pytest.raises(IdentityProviderUnavailableError):
        await verifier.principal(token(key, "k1", issuer, **{TENANT_CLAIM: "acme"}))
