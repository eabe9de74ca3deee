"""Analytics' pure decisions: permissions, claims, figures, statuses, dead-letter replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskpilot.analytics.domain import (
    Action,
    ForbiddenError,
    NotReplayableError,
    Principal,
    Role,
    effective_status,
    figures,
    meta_signature,
    principal_from_claims,
    replay_msg_id,
    replay_subject,
    sandbox_webhook,
    webhook_url,
)
from taskpilot.analytics.service import BadCursorError, decode_cursor, encode_cursor
from taskpilot.contracts.dlq import UNKNOWN_TENANT
from taskpilot.ingest.domain import signature_valid

NOW = datetime(2026, 11, 2, 12, tzinfo=UTC)


def who(*roles: Role, tenant: str | None = "acme") -> Principal:
    return Principal(subject="u1", tenant_id=tenant, roles=frozenset(roles))


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.AGENT, {Action.READ, Action.CONVERSE, Action.EDIT_KNOWLEDGE}),
        (Role.OWNER, set(Action) - {Action.LIST_TENANTS}),
        (Role.OPERATOR, set(Action)),
    ],
)
def test_each_role_may_do_its_actions_in_its_own_tenant(role: Role, allowed: set[Action]) -> None:
    assert {a for a in Action if who(role).may(a, "acme")} == allowed


def test_only_operators_cross_tenants_or_see_unroutable_dead_letters() -> None:
    for role in (Role.OWNER, Role.AGENT):
        assert not who(role).may(Action.READ, "other")
        assert not who(role, tenant=UNKNOWN_TENANT).may(Action.READ, UNKNOWN_TENANT)
    assert who(Role.OPERATOR, tenant=None).may(Action.READ, "other")
    assert who(Role.OPERATOR, tenant=None).may(Action.HANDLE_DEAD_LETTERS, UNKNOWN_TENANT)
    with pytest.raises(ForbiddenError):
        who(Role.AGENT).require(Action.CONFIGURE, "acme")


def test_claims_reach_nested_roles_and_ignore_unknown_ones() -> None:
    claims = {"sub": "kc-1", "org": {"tenant": "acme"}, "realm_access": {"roles": ["agent", "x"]}}
    principal = principal_from_claims(claims, "org.tenant", "realm_access.roles")
    assert (principal.tenant_id, principal.roles) == ("acme", frozenset({Role.AGENT}))
    single = principal_from_claims(
        {"sub": "a", "tenant_id": "t", "roles": "owner"}, "tenant_id", "roles"
    )
    assert single.roles == frozenset({Role.OWNER})


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "a", "tenant_id": "t"},  # no role
        {"sub": "a", "tenant_id": "t", "roles": ["admin"]},  # no role of ours
        {"sub": "a", "roles": ["owner"]},  # no tenant
    ],
)
def test_a_token_without_role_or_tenant_gives_no_access(claims: dict[str, object]) -> None:
    with pytest.raises(ForbiddenError):
        principal_from_claims(claims, "tenant_id", "roles")


def test_operators_need_no_tenant() -> None:
    assert principal_from_claims({"sub": "op", "roles": ["operator"]}, "t", "roles").is_operator


def test_figures_are_ratios_of_the_totals_and_none_without_a_base() -> None:
    totals = {
        "conversations": 10,
        "resolved": 6,
        "handed_off": 3,
        "bot_answers": 20,
        "bot_replies": 16,
        "cache_hits": 4,
        "cost_usd": 0.8,
        "bookings": 2,
    }
    result = figures(totals)
    assert result["resolution_rate"] == 0.6 and result["handoff_rate"] == 0.3
    assert result["cache_hit_rate"] == 0.2
    assert result["cost_per_reply_usd"] == pytest.approx(0.05)
    assert result["cost_per_conversation_usd"] == pytest.approx(0.08)
    assert result["cost_per_booking_usd"] == pytest.approx(0.4)
    empty = figures({k: 0 for k in totals})
    assert set(empty.values()) == {None}


def test_a_conversation_closes_with_the_window_and_opens_when_the_lead_writes() -> None:
    row = {"status": "human", "window_closed": False, "last_in_at": NOW - timedelta(hours=23)}
    assert effective_status(row, NOW) == "human"
    assert effective_status({**row, "last_in_at": NOW - timedelta(hours=25)}, NOW) == "closed"
    assert effective_status({**row, "window_closed": True}, NOW) == "closed"
    iso = {**row, "last_in_at": (NOW - timedelta(hours=30)).isoformat()}
    assert effective_status(iso, NOW) == "closed"


def test_a_partitioned_dead_letter_goes_back_to_the_subject_its_stream_accepts() -> None:
    stored = "wa.inp.3.acme.34600000009.message"
    assert replay_subject(stored, "WHATSAPP_IN") == "wa.in.acme.34600000009.message"
    assert replay_subject("inference.acme.generate_reply", "INFERENCE") == (
        "inference.acme.generate_reply"
    )
    with pytest.raises(NotReplayableError):
        replay_subject(None, None)  # a webhook body never had a subject
    assert replay_msg_id("L1", 0) != replay_msg_id("L1", 1)


def test_the_sandbox_signs_webhooks_as_meta_does() -> None:
    body = sandbox_webhook("100000000000001", "34600000001", "hola", "wamid.X", "Ana", 1)
    assert signature_valid(body, meta_signature(body, "s3cret"), "s3cret")
    assert not signature_valid(body, meta_signature(body, "other"), "s3cret")


def test_webhook_url_and_cursors() -> None:
    assert webhook_url("https://tp.example.com/", "acme") == (
        "https://tp.example.com/webhooks/whatsapp/acme"
    )
    assert decode_cursor(encode_cursor(NOW, "conv-1")) == (NOW, "conv-1")
    with pytest.raises(BadCursorError):
        decode_cursor("not-a-cursor")
