"""Token verification for every service's HTTP API (adapter: it may fetch keys over HTTP).

Three kinds of credential are accepted:

* JWTs of the built-in local issuer (the embedded default). It signs with an ES256 key kept in
  ``{data_dir}/auth/local-issuer.pem`` (created on first use, mode 0600); ``taskpilot token``
  mints tokens with it and analytics publishes its public half at ``/.well-known/jwks.json``,
  where the other services fetch it (or they are given the key set inline).
* JWTs of an OIDC provider (Auth0, Clerk, Keycloak, NextAuth…), verified with its JWKS.
* API keys of machine clients (``tp_...``), looked up in :class:`ApiKeyStore` on every request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt import PyJWKClient
from jwt.algorithms import ECAlgorithm

from taskpilot.tenancy.access import (
    NotAuthenticatedError,
    Principal,
    is_api_key,
    principal_from_claims,
)
from taskpilot.tenancy.api_keys import ApiKeyStore

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


class KeySource(Protocol):
    """The public keys of one issuer."""

    async def key_for(self, token: str) -> Any:
        """The key that verifies ``token`` (by its ``kid``); raises jwt.PyJWTError when none
        does, or IdentityProviderUnavailableError when the keys cannot be fetched."""
        ...


class StaticKeys:
    """A key set given inline (the local issuer's, or ``TASKPILOT_AUTH_JWKS``)."""

    def __init__(self, jwks: dict[str, Any]):
        self._keys = jwt.PyJWKSet.from_dict(jwks)

    async def key_for(self, token: str) -> Any:
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._keys.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise jwt.InvalidKeyError(f"no key with kid {kid!r}")


class RemoteKeys:
    """A key set fetched from ``url``, or from the issuer's discovery document when no URL is
    given; cached for five minutes and fetched again for an unknown ``kid``."""

    def __init__(self, url: str | None, issuer: str | None = None):
        self._url = url
        self._issuer = issuer
        self._client: PyJWKClient | None = None

    async def key_for(self, token: str) -> Any:
        client = await self._jwks()
        try:
            # PyJWKClient fetches over blocking urllib (cached for `lifespan`).
            return (await asyncio.to_thread(client.get_signing_key_from_jwt, token)).key
        except jwt.PyJWKClientConnectionError as exc:
            raise IdentityProviderUnavailableError(str(exc)) from None

    async def _jwks(self) -> PyJWKClient:
        if self._client is None:
            url = self._url or await self._discovered_url()
            self._client = PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)
        return self._client

    async def _discovered_url(self) -> str:
        assert self._issuer is not None
        discovery = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(discovery)
                response.raise_for_status()
                return str(response.json()["jwks_uri"])
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise IdentityProviderUnavailableError(repr(exc)) from None


class TokenVerifier:
    """Turns a bearer credential into a :class:`Principal`, or raises NotAuthenticatedError.

    ``local`` signs in-process (analytics); ``local_keys`` verifies the local issuer's tokens
    elsewhere. ``api_keys`` enables API keys (looked up on every call, never cached)."""

    def __init__(
        self,
        *,
        local: LocalIssuer | None = None,
        local_keys: KeySource | None = None,
        oidc_issuer: str | None = None,
        oidc_audience: str | None = None,
        oidc_jwks_url: str | None = None,
        oidc_algorithms: list[str] | None = None,
        tenant_claim: str = "tenant_id",
        roles_claim: str = "roles",
        api_keys: ApiKeyStore | None = None,
    ):
        self._local_keys = local_keys or (StaticKeys(local.jwks()) if local else None)
        self._issuer = oidc_issuer
        self._audience = oidc_audience
        self._algorithms = oidc_algorithms or ["RS256", "ES256"]
        self._provider_keys = RemoteKeys(oidc_jwks_url, oidc_issuer) if oidc_issuer else None
        self._tenant_claim = tenant_claim
        self._roles_claim = roles_claim
        self._api_keys = api_keys

    async def principal(self, token: str | None) -> Principal:
        if not token:
            raise NotAuthenticatedError("a bearer token or API key is required")
        if is_api_key(token):
            if self._api_keys is None:
                raise NotAuthenticatedError("API keys are not accepted here")
            return await self._api_keys.principal(token)
        claims = await self.claims(token)
        found = principal_from_claims(claims, self._tenant_claim, self._roles_claim)
        return dataclasses.replace(found, credential=token)

    async def claims(self, token: str) -> dict[str, Any]:
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
            if self._local_keys is not None and issuer == LOCAL_ISSUER:
                return jwt.decode(
                    token,
                    await self._local_keys.key_for(token),
                    algorithms=["ES256"],
                    audience=LOCAL_AUDIENCE,
                    issuer=LOCAL_ISSUER,
                    leeway=LEEWAY_S,
                    options={"require": ["exp", "iat", "sub"]},
                )
            if self._provider_keys is not None and issuer == self._issuer:
                return jwt.decode(
                    token,
                    await self._provider_keys.key_for(token),
                    algorithms=self._algorithms,
                    audience=self._audience,
                    issuer=self._issuer,
                    leeway=LEEWAY_S,
                    options={"require": ["exp", "iss", "sub"]},
                )
        except jwt.PyJWTError as exc:
            raise NotAuthenticatedError(f"invalid token: {exc}") from None
        raise NotAuthenticatedError(f"tokens of issuer {issuer!r} are not accepted")


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
