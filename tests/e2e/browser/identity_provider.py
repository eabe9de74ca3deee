"""A stand-in OIDC provider on loopback: discovery, an authorization endpoint that signs the
user in at once, a token endpoint that checks PKCE (S256), and the JWKS it signs with."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from jwt.algorithms import RSAAlgorithm

TENANT_CLAIM = "https://taskpilot.dev/tenant"


def identity_provider(issuer: str, audience: str, user: dict[str, Any]) -> FastAPI:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k1", "use": "sig"}
    codes: dict[str, dict[str, str]] = {}
    app = FastAPI()
    app.add_middleware(
        CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"]
    )

    @app.get("/.well-known/openid-configuration")
    async def discovery() -> dict[str, str]:
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "jwks_uri": f"{issuer}/jwks.json",
        }

    @app.get("/authorize")
    async def authorize(
        client_id: str,
        redirect_uri: str,
        state: str,
        code_challenge: str,
        code_challenge_method: str,
        response_type: str = "code",
    ) -> RedirectResponse:
        if response_type != "code" or code_challenge_method != "S256":
            raise HTTPException(400, "authorization code with S256 PKCE only")
        code = secrets.token_urlsafe(16)
        codes[code] = {
            "challenge": code_challenge,
            "redirect_uri": redirect_uri,
            "client": client_id,
        }
        return RedirectResponse(f"{redirect_uri}?code={code}&state={state}", status_code=302)

    @app.post("/token")
    async def token(request: Request) -> dict[str, Any]:
        form = await request.form()
        grant = codes.pop(str(form.get("code")), None)
        verifier = str(form.get("code_verifier", ""))
        digest = hashlib.sha256(verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        if grant is None or grant["challenge"] != challenge:
            raise HTTPException(400, "invalid_grant")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            raise HTTPException(400, "invalid_grant")
        now = int(time.time())
        claims = {"iss": issuer, "aud": audience, "iat": now, "exp": now + 600, **user}
        access = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
        return {"access_token": access, "token_type": "Bearer", "expires_in": 600}

    @app.get("/jwks.json")
    async def jwks() -> dict[str, Any]:
        return {"keys": [public]}

    return app
