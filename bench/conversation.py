"""Conversation service benchmark: events appended per second and the turn overhead.

    .venv/bin/python bench/conversation.py [--quick]

1. Single conversation: one aggregate, messages saved one by one (the floor: one commit each).
2. Many conversations: the group committer, 200 conversations written concurrently.
3. Turn overhead inside the service: a lead message published on the bus → the GenerateReply
   command the relay publishes (consume, decide, commit, relay), p50/p99, with the service
   running in-process on a real NATS and PostgreSQL.
Figures go to stdout and bench/results/conversation.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import nats

from taskpilot.contracts import subjects
from taskpilot.contracts.whatsapp import TextContent, WhatsAppMessageReceived
from taskpilot.conversation.adapters import eventsourcing_env
from taskpilot.conversation.app import create
from taskpilot.conversation.committer import GroupCommitter
from taskpilot.conversation.service import Conversations
from taskpilot.conversation.settings import ConversationSettings
from taskpilot.runtime.bus import Bus, ensure_streams
from taskpilot.runtime.host import serve
from taskpilot.runtime.servers import (
    MACHINE_POSTGRES,
    NatsServer,
    create_database,
    drop_database,
    free_port,
    scratch_database_name,
)
from taskpilot.runtime.settings import DEV_SECRET_KEYS

WARMUP = 20


def inbound(tenant: str, lead: str, n: int) -> WhatsAppMessageReceived:
    wamid = f"wamid.{lead}.{n}.{uuid.uuid4().hex[:6]}"
    return WhatsAppMessageReceived(
        tenant_id=tenant,
        correlation_id=wamid,
        wamid=wamid,
        phone_number_id="1",
        lead=lead,
        wa_timestamp=datetime.now(UTC),
        content=TextContent(body=f"message {n}"),
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stored(app: Conversations) -> int:
    return int(app.recorder.max_notification_id() or 0)  # type: ignore[attr-defined]


def single_conversation(app: Conversations, count: int) -> float:
    before, started = stored(app), time.perf_counter()
    for n in range(count):
        app.receive(inbound("bench", "single", n))
    return (stored(app) - before) / (time.perf_counter() - started)


async def many_conversations(app: Conversations, conversations: int, per: int) -> float:
    committer = GroupCommitter(app)
    flusher = asyncio.create_task(committer.flush_forever())
    before, started = stored(app), time.perf_counter()
    for n in range(per):
        await asyncio.gather(
            *(
                committer.run(app.receive_change(inbound("bench", f"lead{c}", n)))
                for c in range(conversations)
            )
        )
    elapsed = time.perf_counter() - started
    flusher.cancel()
    return (stored(app) - before) / elapsed


async def turn_overhead(database_url: str, count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats").start()
        try:
            settings = ConversationSettings(
                nats_url=server.url,
                database_url=database_url,
                secret_keys=DEV_SECRET_KEYS,
                http_port=free_port(),
                log_level="WARNING",
                turn_deadline_s=300,
            )
            service = await create(settings)
            stop = asyncio.Event()
            running = asyncio.create_task(serve([service], stop))
            bus = Bus(server.url, name="bench")
            await bus.connect()
            await ensure_streams(bus.js)
            nc = await nats.connect(server.url)
            arrived: dict[str, float] = {}
            done = asyncio.Event()

            async def on_request(msg: nats.aio.msg.Msg) -> None:
                turn = json.loads(msg.data)["turn_id"]
                arrived[turn] = time.perf_counter()
                if len(arrived) >= count:
                    done.set()

            await nc.subscribe(subjects.GENERATE_REPLY.subject(tenant="turns"), cb=on_request)
            sent: dict[str, float] = {}
            for n in range(count):
                message = inbound("turns", f"lead{n}", 0)  # a new lead each time: one turn each
                sent[message.wamid] = time.perf_counter()
                await bus.publish(message, msg_id=message.wamid)
                await asyncio.sleep(0.01)  # an open-loop rate of ~100 turns/s, not a flood
            await asyncio.wait_for(done.wait(), 120)
            warm = list(sent)[WARMUP:]  # the first turns pay for consumer set-up and caches
            latencies = [(arrived[w] - sent[w]) * 1000 for w in warm if w in arrived]
            stop.set()
            await running
            await nc.close()
            await bus.close()
            return {
                "turns": len(latencies),
                "warmup_excluded": WARMUP,
                "p50_ms": statistics.median(latencies),
                "p99_ms": pct(latencies, 0.99),
                "max_ms": max(latencies),
            }
        finally:
            server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    single, conversations, per, turns = (100, 50, 4, 100) if args.quick else (300, 200, 10, 500)
    dbname = scratch_database_name("tp_bench")
    database_url = create_database(MACHINE_POSTGRES, dbname)
    try:
        app = Conversations(env=eventsourcing_env(database_url))
        one = await asyncio.to_thread(single_conversation, app, single)
        many = await many_conversations(app, conversations, per)
        app.close()
        overhead = await turn_overhead(database_url, turns)
    finally:
        drop_database(MACHINE_POSTGRES, dbname)
    results = {
        "single_conversation_events_per_s": round(one),
        "many_conversations_events_per_s": round(many),
        "group_commit_speedup": round(many / one, 2),
        "turn_overhead": {k: round(v, 2) for k, v in overhead.items()},
    }
    one, many, o = (
        results["single_conversation_events_per_s"],
        results["many_conversations_events_per_s"],
        results["turn_overhead"],
    )
    print(f"events appended, one conversation, a commit each: {one:>7} events/s")
    print(f"events appended, {conversations} conversations, group commit: {many:>7} events/s")
    print(f"  group commit speed-up: {results['group_commit_speedup']}x")
    print(
        f"turn overhead (lead message on the bus -> GenerateReply published), {o['turns']} "
        f"turns after {o['warmup_excluded']} warm-up: p50 {o['p50_ms']} ms, "
        f"p99 {o['p99_ms']} ms, max {o['max_ms']} ms"
    )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "conversation.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
