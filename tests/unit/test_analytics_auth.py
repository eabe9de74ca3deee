"""The local issuer and token verification (no network: the OIDC path is in integration)."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import jwt
import pytest

from taskpilot.analytics.auth import LOCAL_AUDIENCE, LocalIssuer, TokenVerifier
from taskpilot.analytics.domain import ForbiddenError, NotAuthenticatedError, Role


def test_the_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    first = LocalIssuer.in_data_dir(tmp_path)
    key = tmp_path / "auth" / "local-issuer.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert LocalIssuer.in_data_dir(tmp_path).kid == first.kid


def test_the_published_jwks_verifies_the_issued_tokens(tmp_path: Path) -> None:
    issuer = LocalIssuer.in_data_dir(tmp_path)
    token = issuer.issue(tenant_id="acme", roles=["owner"], subject="ana")
    public = jwt.PyJWKSet.from_dict(issuer.jwks())[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, public.key, algorithms=["ES256"], audience=LOCAL_AUDIENCE)
    assert (claims["tenant_id"], claims["roles"]) == ("acme", ["owner"])


@pytest.mark.asyncio(loop_scope="session")
async def test_verified_tokens_become_principals(tmp_path: Path) -> None:
    issuer = LocalIssuer.in_data_dir(tmp_path)
    verifier = TokenVerifier(local=issuer)
    token = issuer.issue(tenant_id="acme", roles=["agent"], subject="ana", name="Ana")
    principal = await verifier.principal(token)
    assert (principal.tenant_id, principal.roles, principal.agent) == (
        "acme",
        frozenset({Role.AGENT}),
        "Ana",
    )


@pytest.mark.asyncio(loop_scope="session")
async def test_forged_expired_foreign_and_missing_tokens_are_refused(tmp_path: Path) -> None:
    issuer = LocalIssuer.in_data_dir(tmp_path / "a")
    other = LocalIssuer.in_data_dir(tmp_path / "b")
    verifier = TokenVerifier(local=issuer)
    expired = issuer.issue(tenant_id="acme", roles=["owner"], subject="x", ttl_s=-120)
    forged = other.issue(tenant_id="acme", roles=["owner"], subject="x")
    foreign = jwt.encode(
        {"iss": "https://evil.example", "sub": "x", "exp": time.time() + 60}, "k" * 32, "HS256"
    )
    for token in (expired, forged, foreign, "not-a-jwt", None):
        with pytest.raises(NotAuthenticatedError):
            await verifier.principal(token)
    disabled = TokenVerifier(local=None)
    with pytest.raises(NotAuthenticatedError):
        await disabled.principal(issuer.issue(tenant_id="acme", roles=["owner"], subject="x"))


@pytest.mark.asyncio(loop_scope="session")
async def test_a_token_without_a_known_role_is_forbidden(tmp_path: Path) -> None:
    issuer = LocalIssuer.in_data_dir(tmp_path)
    token = issuer.issue(tenant_id="acme", roles=["viewer"], subject="x")
    with pytest.raises(ForbiddenError):
        await TokenVerifier(local=issuer).principal(token)


def test_the_token_command_signs_with_the_data_dirs_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from taskpilot.cli.main import main

    main(["--data-dir", str(tmp_path), "token", "--tenant", "demo", "--role", "agent"])
    token = capsys.readouterr().out.strip()
    issuer = LocalIssuer.in_data_dir(tmp_path)
    assert issuer.verify(token)["tenant_id"] == "demo"
    main(["--data-dir", str(tmp_path), "token", "--role", "operator", "--url", "--ttl", "30m"])
    url = capsys.readouterr().out.strip()
    assert url.startswith("http://127.0.0.1:8005/#token=")
    claims = issuer.verify(url.split("#token=")[1])
    assert claims["roles"] == ["operator"] and claims["exp"] - claims["iat"] == 1800
