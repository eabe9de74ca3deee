"""Who may do what, API keys' shape, and the verifier's key sources (no network, no database)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskpilot.tenancy.access import (
    Action,
    NotAuthenticatedError,
    Principal,
    Role,
    hash_secret,
    new_api_key,
    parse_api_key,
    secret_matches,
)
from taskpilot.tenancy.tokens import LocalIssuer, StaticKeys, TokenVerifier


def test_an_api_key_names_its_tenant_and_id_and_only_its_hash_is_kept() -> None:
    key = new_api_key("shop-1_a")
    parsed = parse_api_key(key.token)
    assert parsed == key and key.token.startswith("tp_shop-1_a.")
    assert key.secret not in key.secret_hash and secret_matches(key.secret, key.secret_hash)
    assert not secret_matches(key.secret + "x", key.secret_hash)
    assert hash_secret(key.secret) == key.secret_hash
    assert new_api_key("shop").secret != new_api_key("shop").secret


@pytest.mark.parametrize(
    "token",
    [
        "tp_",
        "tp_shop",
        "tp_shop.0123456789abcdef",
        "tp_sh op.0123456789abcdef." + "a" * 43,
        "tp_shop.0123456789ABCDEF." + "a" * 43,
        "tp_shop.0123456789abcdef." + "a" * 42,
    ],
)
def test_malformed_keys_do_not_parse(token: str) -> None:
    assert parse_api_key(token) is None


def test_roles_allow_their_actions_in_their_tenant_only() -> None:
    agent = Principal("a", "shop", frozenset({Role.AGENT}))
    owner = Principal("o", "shop", frozenset({Role.OWNER}))
    operator = Principal("x", None, frozenset({Role.OPERATOR}))
    assert agent.may(Action.READ, "shop") and not agent.may(Action.READ, "other")
    assert not agent.may(Action.MANAGE_API_KEYS, "shop") and owner.may(
        Action.MANAGE_API_KEYS, "shop"
    )
    assert not owner.may(Action.LIST_TENANTS, "shop")
    assert operator.may(Action.ERASE, "other") and operator.may(Action.LIST_TENANTS, "any")


async def test_inline_key_sets_verify_the_local_issuer_and_carry_the_credential(
    tmp_path: Path,
) -> None:
    issuer = LocalIssuer.in_data_dir(tmp_path / "a")
    other = LocalIssuer.in_data_dir(tmp_path / "b")
    verifier = TokenVerifier(local_keys=StaticKeys(json.loads(json.dumps(issuer.jwks()))))
    token = issuer.issue(tenant_id="shop", roles=["owner"], subject="ana")
    principal = await verifier.principal(token)
    assert (principal.tenant_id, principal.credential) == ("shop", token)
    assert token not in repr(principal)
    with pytest.raises(NotAuthenticatedError):
        await verifier.principal(other.issue(tenant_id="shop", roles=["owner"], subject="x"))


async def test_api_keys_are_refused_where_no_key_store_is_configured(tmp_path: Path) -> None:
    verifier = TokenVerifier(local=LocalIssuer.in_data_dir(tmp_path))
    with pytest.raises(NotAuthenticatedError, match="API keys"):
        await verifier.principal(new_api_key("shop").token)
