"""The weekly marketing plan as a JetStream work-queue job: progress events, a result from the
week's recorded facts labelled as the template's when no inference service answers (the model
writing it: test_plan_by_model.py), and a job that survives its worker being killed (SIGKILL)
mid-way."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.msg import Msg

from taskpilot.contracts.conversation import (
    ConversationHandedOff,
    LeadMessageReceived,
    ReplyComposed,
)
from taskpilot.contracts.tools import JobCompleted, JobProgressed
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.servers import NatsServer, free_port
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing import ServiceProcess, eventually
from taskpilot.runtime.testing.tokens import bearer, inline_jwks
from taskpilot.tenancy.tokens import LocalIssuer
from taskpilot.tools.jobs import STEPS
from taskpilot.tools.plan import TEMPLATE
from tests.integration.tools.conftest import Collected

pytestmark = pytest.mark.asyncio(loop_scope="session")


def this_week() -> str:
    today = datetime.now(UTC).date()
    return str(today - timedelta(days=today.weekday()))


async def publish_week(bus: Bus, tenant: str) -> None:
    """Two leads wrote, one got a FAQ answer, the other asked for a human."""
    common = {"tenant_id": tenant, "correlation_id": "wamid.1"}
    for n, lead in enumerate(("346001", "346002"), start=1):
        await bus.publish(
            LeadMessageReceived(
                **common, conversation_id=f"c{n}", lead=lead, sequence=1, wamid=f"w{n}", kind="text"
            )
        )
    await bus.publish(
        ReplyComposed(
            **common,
            conversation_id="c1",
            lead="346001",
            sequence=2,
            turn_id="t1",
            text="We open at 9",
            tier="L1",
            source="faq",
            intent="faq",
        )
    )
    await bus.publish(
        ConversationHandedOff(
            **common, conversation_id="c2", lead="346002", sequence=2, reason="asked for a human"
        )
    )


async def test_the_weekly_plan_reports_progress_and_a_labelled_factual_result(
    bus: Bus, api: httpx.AsyncClient, collected: Collected, tenant: str
) -> None:
    await publish_week(bus, tenant)

    response = await api.post(
        f"/v1/tenants/{tenant}/jobs",
        json={"kind": "weekly_marketing_plan", "week_start": this_week()},
    )
    assert response.status_code == 202
    job_id = response.json()["job_id"]

    [completed] = await collected.wait_for(JobCompleted, timeout=30)
    progress = collected.of(JobProgressed)
    assert [p.step for p in progress] == list(STEPS)
    assert [p.done_steps for p in progress] == [1, 2, 3, 4]
    result = completed.result
    assert result is not None and completed.error is None
    assert (result["written_by"], result["model_generated"]) == (TEMPLATE, False)
    assert "the inference service did not answer" in result["template_reason"]
    assert result["plan"].startswith(result["summary"][0])
    facts = result["facts"]
    assert (facts["messages_from_leads"], facts["distinct_leads"], facts["handoffs"]) == (2, 2, 1)
    assert facts["handoff_reasons"] == {"asked for a human": 1}
    assert facts["bookings"] == 0 and facts["payment_links"] == 0
    assert result["summary"][0] == (
        "2 messages from 2 leads; 1 replies composed, 1 handed to a human."
    )
    [suggestion] = result["rule_based_suggestions"]
    assert "asked for a human" in suggestion["suggestion"] and suggestion["rule"]

    status = (await api.get(f"/v1/tenants/{tenant}/jobs/{job_id}")).json()
    assert (status["status"], status["done_steps"], status["runs"]) == ("done", 4, [0])
    assert status["result"] == result


async def test_unknown_jobs_are_refused(api: httpx.AsyncClient, tenant: str) -> None:
    response = await api.post(f"/v1/tenants/{tenant}/jobs", json={"kind": "world_domination"})
    assert response.status_code == 422
    assert (await api.get(f"/v1/tenants/{tenant}/jobs/nope")).status_code == 404


@pytest.fixture
def restart_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A NATS of its own: the session's tools app must not compete for this job."""
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


def worker(nats_url: str, database_url: str, log: Path, jwks: str) -> ServiceProcess:
    port = free_port()
    env = {
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "TASKPILOT_SECRET_KEYS": DEV_SECRET_KEYS,
        "TASKPILOT_LOG_JSON": "false",
        "TASKPILOT_TOOLS_HTTP_PORT": str(port),
        "TASKPILOT_TOOLS_JOB_ACK_WAIT_S": "2",
        "TASKPILOT_TOOLS_ALLOW_PRIVATE_TARGETS": "true",
        "TASKPILOT_AUTH_JWKS": jwks,
        # Long enough to kill the worker between two steps; the kill itself is immediate.
        "TASKPILOT_TOOLS_JOB_STEP_PAUSE_S": "1.5",
    }
    return ServiceProcess("taskpilot.tools", env, port, log)


async def test_a_job_survives_its_worker_being_killed(
    restart_nats: NatsServer, tools_database: str, tmp_path: Path, token_issuer: LocalIssuer
) -> None:
    tenant = f"t{uuid.uuid4().hex[:10]}"
    nc = await nats.connect(restart_nats.url)
    seen: list[str] = []

    async def record(msg: Msg) -> None:
        seen.append(msg.subject.rsplit(".", 1)[-1])

    jwks = inline_jwks(token_issuer)
    first = worker(restart_nats.url, tools_database, tmp_path / "first.log", jwks).start()
    second = worker(restart_nats.url, tools_database, tmp_path / "second.log", jwks)
    try:
        await first.wait_ready()
        await nc.subscribe(f"tools.{tenant}.job_progressed", cb=record)
        await nc.subscribe(f"tools.{tenant}.job_completed", cb=record)
        headers = bearer(token_issuer, tenant)
        async with httpx.AsyncClient(base_url=first.base_url, headers=headers) as client:
            response = await client.post(
                f"/v1/tenants/{tenant}/jobs", json={"kind": "weekly_marketing_plan"}
            )
            job_id = response.json()["job_id"]

        async def first_step_done() -> bool:
            return len(seen) >= 1

        await eventually(first_step_done, timeout=30, what="the first step")
        assert first.process is not None
        os.kill(first.process.pid, signal.SIGKILL)
        first.stop()

        second.start()
        await second.wait_ready()

        async def finished() -> bool:
            return "job_completed" in seen

        await eventually(finished, timeout=60, what="the job finished by the second worker")
        async with httpx.AsyncClient(base_url=second.base_url, headers=headers) as client:
            status = (await client.get(f"/v1/tenants/{tenant}/jobs/{job_id}")).json()
        assert status["status"] == "done" and status["done_steps"] == len(STEPS)
        assert status["runs"][0] == 0 and status["runs"][-1] >= 1, "resumed, not restarted"
        assert status["result"]["written_by"] == TEMPLATE
        info = await nc.jetstream().stream_info("TOOL_JOBS")
        assert info.state.messages == 0, "the work queue is empty once the job is acknowledged"
    finally:
        second.stop()
        first.stop()
        await nc.close()
