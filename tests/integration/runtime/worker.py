"""A minimal service for the runtime process tests: ``python -m tests.integration.runtime.worker``

It consumes ``Work`` of one run through the uniform policy, spends ``WORK_SECONDS`` on each,
then publishes a ``Done`` carrying its pid (a fresh Msg-Id each time, so a second handling of
the same work shows up as a second ``Done``), and runs under :func:`serve` like every service.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import ClassVar

from fastapi import FastAPI

from taskpilot.contracts import Message, subjects
from taskpilot.runtime.bus import Bus, ensure_streams
from taskpilot.runtime.consumer import current_attempt, subscribe
from taskpilot.runtime.host import ServiceApp, run, serve
from taskpilot.runtime.ops import add_ops_routes
from taskpilot.runtime.telemetry import setup_logging
from tests.integration.runtime.conftest import Work, work_spec


class Done(Message):
    CHANNEL: ClassVar = subjects.Channel("tools.{tenant}.{lead}.done_{run}", subjects.TOOLS)

    run: str
    lead: str
    n: int
    pid: int
    attempt: int = 1

    def subject_parts(self) -> dict[str, str]:
        return {"run": self.run, "lead": self.lead}


async def main() -> None:
    setup_logging("INFO", as_json=False)
    run_id = os.environ["WORK_RUN"]
    work_s = float(os.environ.get("WORK_SECONDS", "0.05"))
    bus = Bus(
        os.environ["NATS_URL"],
        name="worker",
        drain_timeout_s=float(os.environ.get("WORK_DRAIN_S", "20")),
    )
    await bus.connect()
    await ensure_streams(bus.js)

    async def handle(work: Work) -> None:
        await asyncio.sleep(work_s)
        done = work.caused(
            Done, run=work.run, lead=work.lead, n=work.n, pid=os.getpid(), attempt=current_attempt()
        )
        await bus.publish(done, msg_id=uuid.uuid4().hex)

    policy = {
        "ordered": os.environ.get("WORK_ORDERED") == "1",
        "workers": 8,
        "ack_wait_s": float(os.environ.get("WORK_ACK_WAIT_S", "30")),
    }
    subscribe(bus, work_spec(run_id, **policy), Work, handle)
    http = FastAPI()
    add_ops_routes(http, "worker", {"nats": bus.is_connected})
    await serve([ServiceApp("worker", bus, http, "127.0.0.1", int(os.environ["PORT"]))])


if __name__ == "__main__":
    run(main())
