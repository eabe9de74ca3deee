"""Ingest's sender against the Graph API sandbox: retries on Meta's codes, idempotency, shapes."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from taskpilot.contracts import subjects
from taskpilot.contracts.whatsapp import (
    Interactive,
    MarkMessageRead,
    ReplyButton,
    SendWhatsAppMessage,
    TemplateMessage,
    WhatsAppMessageSent,
    WhatsAppSendFailed,
)
from taskpilot.ingest.app import create
from taskpilot.ingest.sandbox import create_app
from taskpilot.ingest.settings import IngestSettings
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.host import serve
from taskpilot.runtime.servers import NatsServer, free_port
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing import eventually
from taskpilot.tenancy import BusinessProfile, SecretBox, Tenant, TenantDirectory, TenantSecrets

pytestmark = pytest.mark.asyncio(loop_scope="session")
TENANT, NUMBER, SCALE = "sender", "5550001", 0.05


@dataclass
class Rig:
    bus: Bus
    sandbox: str
    outcomes: list[Any]

    async def send(self, command: SendWhatsAppMessage, msg_id: str | None = None) -> None:
        await self.bus.publish(command, msg_id=msg_id)

    async def attempts(self, to: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{self.sandbox}/_sandbox/attempts", params={"to": to})
        return list(response.json())

    async def sent(self, to: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{self.sandbox}/_sandbox/messages", params={"to": to})
        return list(response.json())

    async def fail_next(self, code: int, times: int) -> None:
        async with httpx.AsyncClient() as client:
            await client.post(
                f"{self.sandbox}/_sandbox/failures", json={"code": code, "times": times}
            )

    async def outcome_for(self, command: SendWhatsAppMessage) -> Any:
        async def arrived() -> Any:
            return next((o for o in self.outcomes if o.command_id == str(command.event_id)), None)

        return await eventually(arrived, timeout=20, what="send outcome")


@pytest.fixture(scope="module")
async def rig(
    postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Rig]:
    from taskpilot.runtime.servers import create_database, drop_database, scratch_database_name

    nats = NatsServer(tmp_path_factory.mktemp("nats-sender")).start()
    dbname = scratch_database_name()
    database_url = create_database(postgres_admin_url, dbname)
    pool = await open_pool(database_url, max_size=1)
    directory = TenantDirectory(pool, SecretBox.from_setting(DEV_SECRET_KEYS))
    await directory.ensure_schema()
    await directory.upsert(
        Tenant(
            id=TENANT,
            name="Shop",
            profile=BusinessProfile(name="Shop"),
            secrets=TenantSecrets(
                app_secret=SecretStr("s"),
                access_token=SecretStr("EAAtoken"),
                verify_token=SecretStr("v"),
            ),
            phone_number_ids=[NUMBER],
        )
    )
    await pool.close()
    sandbox_port = free_port()
    sandbox = uvicorn.Server(uvicorn.Config(create_app(), port=sandbox_port, log_config=None))
    sandbox_task = asyncio.create_task(sandbox.serve())
    settings = IngestSettings(
        nats_url=nats.url,
        database_url=database_url,
        secret_keys=DEV_SECRET_KEYS,
        http_port=free_port(),
        graph_api_base=f"http://127.0.0.1:{sandbox_port}",
        retry_scale=SCALE,
        send_max_attempts=5,
        log_json=False,
    )
    app = await create(settings)
    stop = asyncio.Event()
    server = asyncio.create_task(serve([app], stop))
    bus = Bus(nats.url, name="rig")
    await bus.connect()
    outcomes: list[Any] = []

    async def record(msg: Any) -> None:
        cls = WhatsAppSendFailed if msg.subject.endswith(".failed") else WhatsAppMessageSent
        outcomes.append(cls.model_validate_json(msg.data))

    await bus.nc.subscribe(subjects.WA_SENT.wildcard(), cb=record)
    await bus.nc.subscribe(subjects.WA_SEND_FAILED.wildcard(), cb=record)
    try:
        yield Rig(bus, f"http://127.0.0.1:{sandbox_port}", outcomes)
    finally:
        stop.set()
        await server
        sandbox.should_exit = True
        await sandbox_task
        await bus.close()
        nats.stop()
        drop_database(postgres_admin_url, dbname)


def command(to: str, **body: Any) -> SendWhatsAppMessage:
    body = body or {"text": "Your table is booked."}
    return SendWhatsAppMessage(
        tenant_id=TENANT,
        correlation_id="c",
        conversation_id=str(uuid.uuid4()),
        phone_number_id=NUMBER,
        to=to,
        **body,
    )


def lead() -> str:
    return "49" + str(uuid.uuid4().int)[:10]


@pytest.mark.parametrize(
    ("code", "expected_gaps"),
    [
        (130429, [1, 2, 4]),  # throughput: exponential
        (131056, [1, 4, 16]),  # pair rate limit: Meta's 4^X
    ],
)
async def test_throttled_sends_go_out_once_after_the_backoff(
    rig: Rig, code: int, expected_gaps: list[int]
) -> None:
    to = lead()
    await rig.fail_next(code, times=3)
    cmd = command(to)
    await rig.send(cmd)
    outcome = await rig.outcome_for(cmd)
    assert isinstance(outcome, WhatsAppMessageSent)
    attempts = await rig.attempts(to)
    assert [a["code"] for a in attempts] == [code, code, code, None]
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(attempts)]
    for gap, expected in zip(gaps, expected_gaps, strict=True):
        assert gap >= expected * SCALE * 0.9, (gaps, expected_gaps)
    assert len(await rig.sent(to)) == 1


async def test_a_redelivered_command_never_reaches_meta_twice(rig: Rig) -> None:
    to = lead()
    cmd = command(to)
    await rig.send(cmd, msg_id="first")
    await rig.outcome_for(cmd)
    await rig.send(cmd, msg_id="again-after-the-duplicate-window")
    await eventually(
        lambda: _count(rig.outcomes, cmd, 2), timeout=10, what="second outcome (from the ledger)"
    )
    assert len(await rig.sent(to)) == 1


async def _count(outcomes: list[Any], cmd: SendWhatsAppMessage, n: int) -> bool:
    return sum(o.command_id == str(cmd.event_id) for o in outcomes) >= n


async def test_outside_the_window_is_reported_not_retried(rig: Rig) -> None:
    to = lead()
    await rig.fail_next(131047, times=1)
    cmd = command(to)
    await rig.send(cmd)
    outcome = await rig.outcome_for(cmd)
    assert isinstance(outcome, WhatsAppSendFailed) and outcome.code == 131047
    assert [a["code"] for a in await rig.attempts(to)] == [131047]


async def test_interactive_and_template_messages_in_meta_shape(rig: Rig) -> None:
    to = lead()
    buttons = command(
        to,
        interactive=Interactive(
            body="When suits you?",
            buttons=[
                ReplyButton(id="am", title="Morning"),
                ReplyButton(id="pm", title="Afternoon"),
            ],
        ),
    )
    template = command(to, template=TemplateMessage(name="appointment_reminder", language="es_ES"))
    for cmd in (buttons, template):
        await rig.send(cmd)
        assert isinstance(await rig.outcome_for(cmd), WhatsAppMessageSent)
    sent = {m["type"]: m["body"] for m in await rig.sent(to)}
    assert sent["interactive"]["interactive"]["action"]["buttons"][1]["reply"] == {
        "id": "pm",
        "title": "Afternoon",
    }
    assert sent["template"]["template"] == {
        "name": "appointment_reminder",
        "language": {"code": "es_ES"},
    }


async def test_mark_read_shows_the_typing_indicator(rig: Rig) -> None:
    wamid = "wamid." + uuid.uuid4().hex
    await rig.bus.publish(
        MarkMessageRead(
            tenant_id=TENANT,
            correlation_id=wamid,
            phone_number_id=NUMBER,
            wamid=wamid,
        )
    )

    async def marked() -> dict[str, Any] | None:
        async with httpx.AsyncClient() as client:
            marks = (await client.get(f"{rig.sandbox}/_sandbox/read-marks")).json()
        return next((m for m in marks if m["message_id"] == wamid), None)

    mark = await eventually(marked, timeout=10, what="read mark")
    assert mark["status"] == "read" and mark["typing_indicator"] == {"type": "text"}
