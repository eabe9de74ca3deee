"""Dashboard authentication: JWTs from an OIDC provider (verified with its JWKS), or from the
built-in local issuer of the embedded default.

The local issuer signs with an ES256 key kept in ``{data_dir}/auth/local-issuer.pem`` (created
on first use, mode 0600); ``taskpilot token`` mints tokens with it and analytics publishes its
public half at ``/.well-known/jwks.json``. With a provider (Auth0, Clerk, Keycloak, NextAuth…)
configured, set ``TASKPILOT_ANALYTICS_LOCAL_ISSUER=false``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt import PyJWKClient
from jwt.algorithms import ECAlgorithm

from taskpilot.analytics.domain import NotAuthenticatedError, Principal, principal_from_claims

LOCAL_ISSUER = "taskpilot-local"
LOCAL_AUDIENCE = "taskpilot-dashboard"
LEEWAY_S = 30


class IdentityProviderUnavailableError(Exception):
    """The OIDC provider's discovery document or keys could not be fetched."""


class LocalIssuer:
    """Mints and verifies the embedded default's tokens (one ES256 key on disk)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey):
        self._key = key
        public = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        self.kid = _thumbprint(public)
        self.jwk = {**public, "kid": self.kid, "use": "sig", "alg": "ES256"}

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> LocalIssuer:
        path = data_dir / "auth" / "local-issuer.pem"
        if not path.exists():
            _create_key(path)
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} is not an EC private key")
        return cls(loaded)

    def issue(
        self,
        *,
        tenant_id: str | None,
        roles: list[str],
        subject: str,
        ttl_s: float = 12 * 3600,
        name: str | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": LOCAL_ISSUER,
            "aud": LOCAL_AUDIENCE,
            "sub": subject,
            "iat": now,
            "exp": now + int(ttl_s),
            "jti": uuid.uuid4().hex,
            "roles": roles,
        }
        if tenant_id is not None:
            claims["tenant_id"] = tenant_id
        if name:
            claims["name"] = name
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.kid})

    def verify(self, token: str) -> dict[str, Any]:
        return jwt.decode(
            token,
            self._key.public_key(),
            algorithms=["ES256"],
            audience=LOCAL_AUDIENCE,
            issuer=LOCAL_ISSUER,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "sub"]},
        )

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk]}


class TokenVerifier:
    """Turns a bearer token into a :class:`Principal`, or raises NotAuthenticatedError."""

    def __init__(
        self,
        *,
        local: LocalIssuer | None,
        oidc_issuer: str | None = None,
        oidc_audience: str | None = None,
        oidc_jwks_url: str | None = None,
        oidc_algorithms: list[str] | None = None,
        tenant_claim: str = "tenant_id",
        roles_claim: str = "roles",
    ):
        self._local = local
        self._issuer = oidc_issuer
        self._audience = oidc_audience
        self._algorithms = oidc_algorithms or ["RS256", "ES256"]
        self._jwks_url = oidc_jwks_url
        self._jwks: PyJWKClient | None = None
        self._tenant_claim = tenant_claim
        self._roles_claim = roles_claim

    async def principal(self, token: str | None) -> Principal:
        if not token:
            raise NotAuthenticatedError("a bearer token is required")
        claims = await self.claims(token)
        return principal_from_claims(claims, self._tenant_claim, self._roles_claim)

    async def claims(self, token: str) -> dict[str, Any]:
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
            if self._local is not None and issuer == LOCAL_ISSUER:
                return self._local.verify(token)
            if self._issuer is not None and issuer == self._issuer:
                jwks = await self._provider_keys()
                # PyJWKClient fetches over blocking urllib (cached for `lifespan`).
                key = await asyncio.to_thread(jwks.get_signing_key_from_jwt, token)
                return jwt.decode(
                    token,
                    key.key,
                    algorithms=self._algorithms,
                    audience=self._audience,
                    issuer=self._issuer,
                    leeway=LEEWAY_S,
                    options={"require": ["exp", "iss", "sub"]},
                )
        except jwt.PyJWKClientConnectionError as exc:
            raise IdentityProviderUnavailableError(str(exc)) from None
        except jwt.PyJWTError as exc:
            raise NotAuthenticatedError(f"invalid token: {exc}") from None
        raise NotAuthenticatedError(f"tokens of issuer {issuer!r} are not accepted")

    async def _provider_keys(self) -> PyJWKClient:
        """The provider's key set, from its discovery document unless configured."""
        if self._jwks is None:
            url = self._jwks_url
            if url is None:
                assert self._issuer is not None
                discovery = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
                try:
                    async with httpx.AsyncClient(timeout=5) as client:
                        response = await client.get(discovery)
                        response.raise_for_status()
                        url = str(response.json()["jwks_uri"])
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    raise IdentityProviderUnavailableError(repr(exc)) from None
            self._jwks = PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)
        return self._jwks


def _create_key(path: Path) -> None:
    """Write a new key atomically; if another process won the race, keep theirs."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, pem)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an EC key, as the key id."""
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
