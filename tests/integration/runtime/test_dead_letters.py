"""Dead letters: the advisory safety net for consumers outside our policy, and the
``taskpilot dlq`` commands (run as a subprocess, as an operator would)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable

import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from taskpilot.contracts import subjects
from taskpilot.contracts.dlq import DeadLettered
from taskpilot.runtime.bus import MSG_ID, Bus
from taskpilot.runtime.consumer import PermanentError, subscribe
from taskpilot.runtime.dlq import (
    DLQ_ACTIONS,
    DeadLetterActioned,
    publish_subject,
    register_dead_letter_mover,
)
from taskpilot.runtime.servers import NatsServer
from taskpilot.runtime.testing import eventually
from tests.integration.runtime.conftest import Work, connected, work_spec

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def letters_of(bus: Bus, tenant: str) -> dict[int, DeadLettered]:
    found: dict[int, DeadLettered] = {}
    sub = await bus.js.subscribe(
        subjects.DEAD_LETTER.wildcard(tenant=tenant), ordered_consumer=True
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.3)
            except TimeoutError:
                return found
            found[msg.metadata.sequence.stream] = DeadLettered.model_validate_json(msg.data)
    finally:
        await sub.unsubscribe()


async def test_a_mover_that_was_down_still_dead_letters_what_a_raw_consumer_gave_up(
    make_bus: Callable[..., Bus], run_id: str
) -> None:
    tenant = f"adv{run_id}"
    bus = await connected(make_bus())
    durable = f"raw-{run_id}"
    # A consumer outside our policy: two deliveries, never acked, one terminated.
    await bus.js.add_consumer(
        subjects.TOOLS.name,
        ConsumerConfig(
            durable_name=durable,
            filter_subject=f"tools.{tenant}.*.work_{run_id}",
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=0.3,
            max_deliver=2,
        ),
    )
    for n in (1, 2):
        work = Work(tenant_id=tenant, correlation_id=f"corr-{n}", run=run_id, lead="l1", n=n)
        await bus.publish(work)
    sub = await bus.js.pull_subscribe_bind(durable, subjects.TOOLS.name)
    gave_up = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{subjects.TOOLS.name}.{durable}"

    async def pull_until_given_up() -> bool:
        # JetStream announces max deliveries when it would deliver once more, so keep asking.
        try:
            for msg in await sub.fetch(2, timeout=0.5):
                if Work.model_validate_json(msg.data).n == 2:
                    await msg.term()  # MSG_TERMINATED, no reason
        except TimeoutError:
            pass
        try:
            await bus.js.get_last_msg("DLQ_ADVISORIES", gave_up)
        except NotFoundError:
            return False
        return True

    await eventually(pull_until_given_up, timeout=15, what="max deliveries advisory stored")
    await sub.unsubscribe()

    mover = await connected(make_bus())
    register_dead_letter_mover(mover)
    await mover.start()

    async def two_letters() -> dict[int, DeadLettered] | None:
        found = await letters_of(bus, tenant)
        return found if len(found) == 2 else None

    found = await eventually(two_letters, timeout=15, what="advisories moved")
    by_reason = {letter.reason: letter for letter in found.values()}
    assert set(by_reason) == {"max_deliveries", "terminated"}
    gave_up = by_reason["max_deliveries"]
    assert gave_up.origin == durable and gave_up.attempts == 2
    assert gave_up.correlation_id == "corr-1" and gave_up.tenant_id == tenant
    assert Work.model_validate_json(gave_up.payload).n == 1  # the original, whole
    assert gave_up.original_subject == f"tools.{tenant}.l1.work_{run_id}"


async def test_our_own_dead_letters_are_not_doubled_by_the_mover(
    make_bus: Callable[..., Bus], run_id: str
) -> None:
    tenant = f"own{run_id}"
    bus = await connected(make_bus())

    async def refuse(work: Work) -> None:
        raise PermanentError("no such product", reason="bad_arguments")

    subscribe(bus, work_spec(run_id), Work, refuse)
    register_dead_letter_mover(bus)
    await bus.start()
    await bus.publish(Work(tenant_id=tenant, correlation_id="c", run=run_id, lead="l1", n=1))
    await eventually(lambda: letters_of(bus, tenant), timeout=10, what="the policy's letter")

    async def advisory_seen() -> bool:
        info = await bus.js.consumer_info("DLQ_ADVISORIES", "dead-letter-mover")
        return info.num_pending == 0 and info.num_ack_pending == 0

    await eventually(advisory_seen, timeout=10, what="mover caught up")
    letters = await letters_of(bus, tenant)
    assert [letter.reason for letter in letters.values()] == ["bad_arguments"]


async def dlq(nats_url: str, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskpilot.cli",
        "dlq",
        "--operator",
        "tester",
        *args,
        env={**os.environ, "NATS_URL": nats_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


async def test_dlq_list_show_replay_discard(
    make_bus: Callable[..., Bus], nats_server: NatsServer, run_id: str
) -> None:
    tenant = f"cli{run_id}"
    bus = await connected(make_bus())
    handled: list[int] = []
    broken = {1, 2}

    async def handle(work: Work) -> None:
        if work.n in broken:
            raise PermanentError("product 42 is unknown", reason="bad_arguments")
        handled.append(work.n)

    subscribe(bus, work_spec(run_id), Work, handle)
    await bus.start()
    for n in (1, 2):
        await bus.publish(Work(tenant_id=tenant, correlation_id=f"c{n}", run=run_id, lead="l", n=n))
    await eventually(
        lambda: _len_is(letters_of(bus, tenant), 2), timeout=10, what="two dead letters"
    )

    code, out = await dlq(nats_server.url, "list", "--tenant", tenant, "--json")
    assert code == 0, out
    listed = [json.loads(line) for line in out.splitlines()]
    assert [(r["reason"], r["status"]) for r in listed] == [("bad_arguments", "open")] * 2
    first, second = listed[0]["seq"], listed[1]["seq"]

    code, out = await dlq(nats_server.url, "show", listed[0]["id"])  # the dashboard's id
    shown = json.loads(out)
    assert code == 0 and shown["letter"]["payload"]["n"] == 1  # the original body, decoded

    broken.clear()  # the cause is fixed: a replay now succeeds
    code, out = await dlq(nats_server.url, "replay", str(first), "--note", "product added")
    assert code == 0 and "replayed" in out, out
    await eventually(lambda: _true(handled == [1]), timeout=10, what="replayed work handled")

    code, out = await dlq(nats_server.url, "discard", str(second), "--note", "duplicate order")
    assert code == 0, out
    code, out = await dlq(nats_server.url, "show", str(second))
    assert code == 1 and "no dead letter" in out

    code, out = await dlq(nats_server.url, "list", "--tenant", tenant, "--json")
    assert [(r["seq"], r["status"]) for r in map(json.loads, out.splitlines())] == [
        (first, "replayed")
    ]
    actions = await recorded_actions(bus, tenant)
    assert [(a.action, a.letter_seq, a.operator) for a in actions] == [
        ("replayed", first, "tester"),
        ("discarded", second, "tester"),
    ]
    replayed = await bus.js.get_msg(subjects.TOOLS.name, actions[0].republished_seq)
    headers = replayed.headers or {}
    assert headers[MSG_ID] == actions[0].republished_msg_id == f"replay:{listed[0]['id']}:1"
    assert headers["Replay-Of"] == listed[0]["id"]
    assert headers["Correlation-Id"] == "c1" and headers["Tenant-Id"] == tenant
    assert actions[1].letter is not None and actions[1].letter["correlation_id"] == "c2"


async def test_replays_of_partitioned_inbound_messages_go_to_the_publish_subject() -> None:
    assert publish_subject("wa.inp.3.t1.34600.message") == "wa.in.t1.34600.message"
    assert publish_subject("inference.t1.generate_reply") == "inference.t1.generate_reply"


async def recorded_actions(bus: Bus, tenant: str) -> list[DeadLetterActioned]:
    sub = await bus.js.subscribe(
        f"dlqops.{tenant}.*", ordered_consumer=True, stream=DLQ_ACTIONS.name
    )
    found = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.3)
            except TimeoutError:
                return found
            found.append(DeadLetterActioned.model_validate_json(msg.data))
    finally:
        await sub.unsubscribe()


async def _len_is(found: object, n: int) -> bool:
    return len(await found) == n  # type: ignore[misc, arg-type]


async def _true(value: bool) -> bool:
    return value
