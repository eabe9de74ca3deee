"""Slow jobs: queued as ``RunJob`` on the TOOL_JOBS work queue, run step by step.

Each step's result is checkpointed in ``tools_jobs`` before its ``JobProgressed`` is published.
A worker that dies mid-job leaves its message unacknowledged; after ``ack_wait`` JetStream gives
it to another (or the restarted) worker, which resumes after the last checkpoint. A finished job
republishes its ``JobCompleted`` (same id) if delivered again.

The weekly plan: the week's facts are gathered and drafted deterministically, then the
inference service's model writes the plan from them (request-reply). If inference refuses, is
not there or does not answer in time, the job still finishes, with the draft labelled
``written_by: "template"`` and the reason; the model step is checkpointed like the others, so a
restarted job does not pay for the plan twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Any

from pydantic import ValidationError

from taskpilot.contracts.inference import MarketingPlanAnswer
from taskpilot.contracts.tools import JobCompleted, JobProgressed, RunJob, ToolError
from taskpilot.runtime.bus import Bus, RequestError
from taskpilot.runtime.consumer import current_attempt
from taskpilot.tools import domain, plan
from taskpilot.tools.adapters import ConversationHistory
from taskpilot.tools.repository import ToolsRepository

log = logging.getLogger(__name__)

WEEKLY_PLAN = "weekly_marketing_plan"
STEPS = ("collect_conversations", "collect_tool_facts", "compose_plan", "write_plan")
JOB_KINDS = (WEEKLY_PLAN,)


class UnknownJobKindError(ValueError):
    pass


class JobNotFoundError(LookupError):
    pass


class Jobs:
    def __init__(
        self,
        repo: ToolsRepository,
        history: ConversationHistory,
        bus: Bus,
        *,
        attempts: int = 5,
        step_pause_s: float = 0.0,
        plan_timeout_s: float = 45.0,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ):
        self._repo = repo
        self._history = history
        self._bus = bus
        self._attempts = attempts
        self._pause = step_pause_s
        self._plan_timeout_s = plan_timeout_s
        self._today = today

    async def start(
        self, tenant_id: str, kind: str, week_start: date | None, job_id: str | None = None
    ) -> str:
        """Queue a job (idempotent by ``job_id``); returns its id."""
        if kind not in JOB_KINDS:
            raise UnknownJobKindError(f"unknown job kind {kind!r}; known: {', '.join(JOB_KINDS)}")
        job_id = job_id or uuid.uuid4().hex
        week = week_start or plan.last_full_week(self._today())
        parameters = {"week_start": week.isoformat()}
        await self._repo.create_job(tenant_id, job_id, kind, parameters)
        await self._bus.publish(
            RunJob(
                event_id=domain.event_id(tenant_id, job_id, "run"),
                tenant_id=tenant_id,
                correlation_id=f"job:{job_id}",
                job_id=job_id,
                kind=kind,
                parameters=parameters,
            ),
            msg_id=f"job:{tenant_id}:{job_id}",
        )
        return job_id

    async def status(self, tenant_id: str, job_id: str) -> dict[str, Any]:
        job = await self._repo.job(tenant_id, job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        state = job.pop("state") or {}  # working data, not for the dashboard, except:
        job["runs"] = state.get("runs", [])  # the step each run started at (restarts show)
        return job

    async def run(self, command: RunJob) -> None:
        tenant, job_id = command.tenant_id, command.job_id
        job = await self._repo.job(tenant, job_id)
        if job is None:  # queued by another path: the command carries everything needed
            await self._repo.create_job(tenant, job_id, command.kind, command.parameters)
            job = await self._repo.job(tenant, job_id)
            assert job is not None
        if job["status"] not in ("done", "failed"):
            try:
                await self._run_steps(command, job["done_steps"], job["state"])
            except Exception as exc:
                if current_attempt() < self._attempts:
                    raise
                log.exception("job %s failed on its last attempt", job_id)
                error = ToolError(code="job_failed", message=f"{type(exc).__name__}: {exc}")
                await self._repo.save_job(tenant, job_id, status="failed", error=error.model_dump())
        await self._announce_completion(command)

    async def _run_steps(self, command: RunJob, done: int, state: dict[str, Any]) -> None:
        tenant, job_id = command.tenant_id, command.job_id
        state = {**state, "runs": [*state.get("runs", []), done]}
        await self._repo.save_job(
            tenant, job_id, status="running", total_steps=len(STEPS), state=state
        )
        log.info("job %s (%s) running from step %d of %d", job_id, command.kind, done, len(STEPS))
        for number, step in enumerate(STEPS[done:], start=done + 1):
            if self._pause:
                await asyncio.sleep(self._pause)  # a throttle for demos and restart tests
            state = {**state, step: await self._step(step, command, state)}
            await self._repo.save_job(tenant, job_id, done_steps=number, state=state)
            await self._bus.publish(
                command.caused(
                    JobProgressed,
                    job_id=job_id,
                    kind=command.kind,
                    step=step,
                    done_steps=number,
                    total_steps=len(STEPS),
                ).model_copy(update={"event_id": domain.event_id(tenant, job_id, step)}),
                msg_id=f"job:{tenant}:{job_id}:{step}",
            )
        await self._repo.save_job(tenant, job_id, status="done", result=state["write_plan"])

    async def _step(self, step: str, command: RunJob, state: dict[str, Any]) -> dict[str, Any]:
        week = date.fromisoformat(command.parameters["week_start"])
        start, end = (datetime.combine(d, time(0), UTC) for d in plan.week_bounds(week))
        if step == "collect_conversations":
            events = await self._history.events(command.tenant_id, start, end)
            return plan.tally(plan.empty_tally(), events)
        if step == "collect_tool_facts":
            return await self._repo.week_of_tool_facts(command.tenant_id, start, end)
        if step == "compose_plan":
            conversations, tools = state["collect_conversations"], state["collect_tool_facts"]
            return plan.weekly_plan(week, conversations, tools)
        draft = state["compose_plan"]
        return plan.written(draft, await self._ask_model(command, draft))

    async def _ask_model(self, command: RunJob, draft: dict[str, Any]) -> MarketingPlanAnswer:
        request = plan.plan_request(draft, command, command.job_id)
        try:
            return await self._bus.request(
                request, MarketingPlanAnswer, timeout=self._plan_timeout_s
            )
        except (RequestError, ValidationError) as exc:
            log.warning("inference did not write the plan of job %s: %s", command.job_id, exc)
            return MarketingPlanAnswer(refused=f"the inference service did not answer ({exc})")

    async def _announce_completion(self, command: RunJob) -> None:
        job = await self._repo.job(command.tenant_id, command.job_id)
        assert job is not None
        error = ToolError.model_validate(job["error"]) if job["error"] else None
        await self._bus.publish(
            command.caused(
                JobCompleted,
                job_id=command.job_id,
                kind=command.kind,
                result=job["result"],
                error=error,
            ).model_copy(
                update={"event_id": domain.event_id(command.tenant_id, command.job_id, "done")}
            ),
            msg_id=f"job:{command.tenant_id}:{command.job_id}:done",
        )
