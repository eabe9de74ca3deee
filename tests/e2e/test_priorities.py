"""Run as its own process, analytics yields the shared cores to the reply path (ADR 13)."""

from __future__ import annotations

import os

from tests.e2e.conftest import System


def priority(system: System, name: str) -> int:
    process = system.processes[name].process
    assert process is not None
    return os.getpriority(os.PRIO_PROCESS, process.pid)


async def test_analytics_runs_ten_nice_steps_below_the_reply_path(system: System) -> None:
    reply_path = {priority(system, n) for n in ("ingest", "conversation", "inference")}
    assert len(reply_path) == 1
    assert priority(system, "analytics") == reply_path.pop() + 10  # TASKPILOT_ANALYTICS_NICE
