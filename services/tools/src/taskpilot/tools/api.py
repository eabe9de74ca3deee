"""Tools HTTP API: tenant configuration, outgoing webhooks and their dead letters, slow jobs,
and Stripe's inbound webhook. Domain errors become HTTP statuses here and nowhere else.

Every route but Stripe's webhook (verified by its signature) needs a token whose role allows
the route's action on the tenant in its path (the guard).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from taskpilot.contracts import TenantId
from taskpilot.runtime.auth import Guard
from taskpilot.tenancy.access import Action
from taskpilot.tools.configuration import (
    ConnectionIn,
    InvalidConfigurationError,
    NotFoundError,
    ToolsConfiguration,
    ToolSettingsIn,
    WebhookEndpointIn,
)
from taskpilot.tools.jobs import JobNotFoundError, Jobs, UnknownJobKindError
from taskpilot.tools.signing import BadSignatureError
from taskpilot.tools.webhooks import (
    DeadLetterNotFoundError,
    NotConfiguredError,
    OutgoingWebhooks,
    PaymentWebhooks,
)

Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Seq = Annotated[int, Path(ge=1, le=2**63 - 1, description="A dead letter's stream sequence")]


class JobIn(BaseModel):
    kind: str
    week_start: date | None = None
    job_id: str | None = None


def add_exception_handlers(app: FastAPI) -> None:
    statuses: dict[type[Exception], int] = {
        InvalidConfigurationError: 422,
        UnknownJobKindError: 422,
        NotFoundError: 404,
        JobNotFoundError: 404,
        DeadLetterNotFoundError: 404,
    }
    for error, status in statuses.items():

        async def handler(request: Request, exc: Exception, status: int = status) -> JSONResponse:
            return JSONResponse({"detail": str(exc) or type(exc).__name__}, status_code=status)

        app.add_exception_handler(error, handler)


def configuration_router(config: ToolsConfiguration, guard: Guard) -> APIRouter:
    # Signed in first: without a credential every request is a 401, whatever else it holds.
    router = APIRouter(
        prefix="/v1/tenants/{tenant_id}",
        tags=["tools configuration"],
        dependencies=[guard.signed_in()],
    )
    read, configure = guard.allows(Action.READ), guard.allows(Action.CONFIGURE)

    @router.get("/tools", dependencies=[read])
    async def tools_for_the_model(tenant_id: TenantId) -> list[dict[str, Any]]:
        """Schemas of the tools this tenant can run now (enabled and connected)."""
        return await config.runnable_tool_schemas(tenant_id)

    @router.get("/tools/settings", dependencies=[read])
    async def get_settings(tenant_id: TenantId) -> ToolSettingsIn:
        return await config.settings(tenant_id)

    @router.put("/tools/settings", status_code=204, dependencies=[configure])
    async def put_settings(tenant_id: TenantId, body: ToolSettingsIn) -> None:
        await config.save_settings(tenant_id, body)

    @router.get("/tools/connections", dependencies=[read])
    async def list_connections(tenant_id: TenantId) -> list[dict[str, Any]]:
        return await config.connections(tenant_id)

    @router.put("/tools/connections/calendar", status_code=204, dependencies=[configure])
    async def connect_calendar(tenant_id: TenantId, body: ConnectionIn) -> None:
        await config.connect(tenant_id, "calendar", body)

    @router.put("/tools/connections/payments", status_code=204, dependencies=[configure])
    async def connect_payments(tenant_id: TenantId, body: ConnectionIn) -> None:
        await config.connect(tenant_id, "payments", body)

    @router.put("/tools/connections/workflows/{name}", status_code=204, dependencies=[configure])
    async def connect_workflow(tenant_id: TenantId, name: Name, body: ConnectionIn) -> None:
        await config.connect(tenant_id, f"workflow:{name}", body)

    @router.delete("/tools/connections/{kind}", status_code=204, dependencies=[configure])
    async def disconnect(tenant_id: TenantId, kind: str) -> None:
        await config.disconnect(tenant_id, kind)

    @router.post("/tools/secrets/rotate", dependencies=[configure])
    async def rotate(tenant_id: TenantId) -> dict[str, int]:
        """Seal every stored secret again under the newest key of TASKPILOT_SECRET_KEYS."""
        return {"resealed": await config.rotate_secrets(tenant_id)}

    @router.get("/webhooks", dependencies=[read])
    async def list_endpoints(tenant_id: TenantId) -> list[dict[str, Any]]:
        return await config.endpoints(tenant_id)

    @router.put("/webhooks/{endpoint_id}", status_code=204, dependencies=[configure])
    async def put_endpoint(tenant_id: TenantId, endpoint_id: Name, body: WebhookEndpointIn) -> None:
        await config.save_endpoint(tenant_id, endpoint_id, body)

    @router.delete("/webhooks/{endpoint_id}", status_code=204, dependencies=[configure])
    async def delete_endpoint(tenant_id: TenantId, endpoint_id: Name) -> None:
        await config.delete_endpoint(tenant_id, endpoint_id)

    return router


def automation_router(outgoing: OutgoingWebhooks, jobs: Jobs, guard: Guard) -> APIRouter:
    router = APIRouter(
        prefix="/v1/tenants/{tenant_id}", tags=["automation"], dependencies=[guard.signed_in()]
    )
    read, configure = guard.allows(Action.READ), guard.allows(Action.CONFIGURE)
    replay_letters = guard.allows(Action.HANDLE_DEAD_LETTERS)

    @router.get("/webhooks-dead-letters", dependencies=[read])
    async def dead_letters(tenant_id: TenantId) -> list[dict[str, Any]]:
        """Deliveries that failed every attempt; ``seq`` replays one."""
        return await outgoing.dead_letters(tenant_id)

    @router.post(
        "/webhooks-dead-letters/{seq}/replay", status_code=202, dependencies=[replay_letters]
    )
    async def replay(tenant_id: TenantId, seq: Seq) -> dict[str, str]:
        return {"delivery_id": await outgoing.replay(tenant_id, seq)}

    @router.post("/jobs", status_code=202, dependencies=[configure])
    async def start_job(tenant_id: TenantId, body: JobIn) -> dict[str, str]:
        return {"job_id": await jobs.start(tenant_id, body.kind, body.week_start, body.job_id)}

    @router.get("/jobs/{job_id}", dependencies=[read])
    async def job_status(tenant_id: TenantId, job_id: Name) -> dict[str, Any]:
        return await jobs.status(tenant_id, job_id)

    return router


def stripe_router(payments: PaymentWebhooks) -> APIRouter:
    router = APIRouter(tags=["webhooks"])

    @router.post("/webhooks/stripe/{tenant_id}")
    async def stripe_webhook(tenant_id: TenantId, request: Request) -> dict[str, str]:
        """Stripe's events for this tenant's account, verified on the raw body."""
        body = await request.body()
        try:
            outcome = await payments.when_stripe_event(
                tenant_id, body, request.headers.get("Stripe-Signature")
            )
        except BadSignatureError as exc:
            raise HTTPException(400, f"bad signature: {exc}") from None
        except NotConfiguredError:
            raise HTTPException(400, "no Stripe connection for this tenant") from None
        return {"outcome": outcome}

    return router
