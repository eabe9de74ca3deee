"""The stand-ins fail: the model side goes down or hangs (inference stopped, or frozen with
SIGSTOP: no LLM stand-in is configured in the embedded default, so inference is what stops
answering), and the Graph API answers storms of 5xx and 130429. Every lead still gets a
holding reply or handoff within the turn deadline; sends are delayed, never lost or doubled."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from tests.chaos.conftest import Load, System, scale

pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.chaos,
    pytest.mark.timeout(1800),
]

DEADLINE_S = 20.0  # TASKPILOT_CONVERSATION_TURN_DEADLINE_S in the chaos system


async def test_model_side_down_or_hung_every_lead_gets_a_holding_reply_in_time(
    system: System,
) -> None:
    load = await Load.ready(system, tenants=5)
    inference = system.processes["inference"]
    assert inference.process is not None
    try:
        await asyncio.to_thread(inference.stop, signal.SIGKILL)  # down
        await load.run(scale(100), rate=5.0, handoffs=False)
        await load.until_answered(len(load.posted), timeout=DEADLINE_S + 60)
        system.processes["inference"] = inference = system._service("inference").start()
        await inference.wait_ready()
        assert inference.process is not None
        inference.process.send_signal(signal.SIGSTOP)  # hung: holds what it pulled
        await load.run(scale(100), rate=5.0, handoffs=False)
        await load.until_answered(len(load.posted), timeout=DEADLINE_S + 60)
        inference.process.send_signal(signal.SIGCONT)  # answers late, for closed turns
        result = await load.settle(timeout=120)
    finally:
        if inference.process is not None:
            inference.process.send_signal(signal.SIGCONT)
        await load.close()
    assert load.sends is not None
    late = [
        p
        for p in load.posted
        if float(load.sends.by_lead[p.lead][0]["received_at"]) - (p.accepted_at or 0)
        > DEADLINE_S + 10
    ]
    holding = {
        t for p in load.posted for t, kind in p.tenant.replies().items() if kind == "handoff"
    }
    texts = {load.sends.by_lead[p.lead][0]["text"] for p in load.posted}
    print(result | {"late": len(late), "duplicates": len(result["duplicates"])})
    assert result["without_outcome"] == [] and result["duplicates"] == {}
    assert result["busy_consumers"] == {}
    assert late == []  # within the deadline (plus the timer loop's and the sender's slack)
    assert texts <= holding  # each one the tenant's holding message, with a handoff


async def test_graph_storms_of_5xx_and_130429_delay_sends_but_lose_or_double_none(
    system: System,
) -> None:
    load = await Load.ready(system, tenants=5)
    sandbox = system.url("sandbox")
    storms = {130429: scale(150), 131000: scale(100), 2: scale(50)}  # throttled, 500, 503
    try:
        async with httpx.AsyncClient() as client:
            for code, times in storms.items():
                rule = {"code": code, "times": times}
                (await client.post(f"{sandbox}/_sandbox/failures", json=rule)).raise_for_status()
            started = time.time()
            await load.run(scale(300), rate=8.0, handoffs=False)
            result = await load.settle(timeout=600)
            attempts = (await client.get(f"{sandbox}/_sandbox/attempts")).json()
    finally:
        await load.close()
    failed: dict[int, int] = {}
    for attempt in attempts:
        if attempt["code"] is not None and attempt["at"] >= started:
            failed[attempt["code"]] = failed.get(attempt["code"], 0) + 1
    print(result | {"duplicates": len(result["duplicates"]), "failed_attempts": failed})
    assert failed == storms  # every storm was met, and retried through
    assert result["without_outcome"] == [] and result["duplicates"] == {}
    assert result["busy_consumers"] == {}
    assert result["dead_lettered"] == 0  # delayed, not given up
