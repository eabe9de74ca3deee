"""The tenant a piece of work runs for."""

from __future__ import annotations

import asyncio

import pytest

from taskpilot.tenancy import (
    TENANT_HEADER,
    NoTenantError,
    current_tenant,
    require_tenant,
    tenant_from_headers,
    tenant_scope,
)


def test_outside_any_scope_there_is_no_tenant() -> None:
    assert current_tenant() is None
    with pytest.raises(NoTenantError):
        require_tenant()


def test_a_scope_sets_the_tenant_and_resets_it() -> None:
    with tenant_scope("acme") as tenant:
        assert tenant == "acme"
        assert current_tenant() == "acme"
        assert require_tenant() == "acme"

    assert current_tenant() is None


def test_nested_scopes_restore_the_outer_tenant() -> None:
    with tenant_scope("acme"):
        with tenant_scope("globex"):
            assert current_tenant() == "globex"
        assert current_tenant() == "acme"

    assert current_tenant() is None


def test_the_tenant_is_reset_when_the_work_fails() -> None:
    with pytest.raises(RuntimeError), tenant_scope("acme"):
        raise RuntimeError("boom")

    assert current_tenant() is None


async def test_concurrent_tasks_keep_their_own_tenant() -> None:
    both_inside = asyncio.Barrier(2)

    async def work(tenant: str) -> str | None:
        with tenant_scope(tenant):
            await both_inside.wait()  # the other task has set its tenant by now
            return current_tenant()

    assert await asyncio.gather(work("acme"), work("globex")) == ["acme", "globex"]
    assert current_tenant() is None


@pytest.mark.parametrize(
    ("headers", "tenant"),
    [({TENANT_HEADER: "acme"}, "acme"), ({}, None), (None, None), ({"Other": "x"}, None)],
)
def test_the_tenant_travels_in_a_header(headers, tenant) -> None:
    assert tenant_from_headers(headers) == tenant
