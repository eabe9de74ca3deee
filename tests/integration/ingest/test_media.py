"""Inbound media: a signed webhook with an image, video, ... is acknowledged at once; ingest's
media consumer then resolves it through the Graph API sandbox, checks it, stores it and
announces WhatsAppMediaStored. Meta's errors, oversize and checksum mismatch end as retries or
dead letters with the cause."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from taskpilot.contracts import subjects
from taskpilot.contracts.dlq import DeadLettered
from taskpilot.contracts.whatsapp import MediaContent, WhatsAppMediaStored, WhatsAppMessageReceived
from taskpilot.ingest.app import create
from taskpilot.ingest.handlers import media_spec
from taskpilot.ingest.meta import media_message, message_value, signed, text_message, webhook
from taskpilot.ingest.sandbox import create_app
from taskpilot.ingest.settings import IngestSettings
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.host import serve
from taskpilot.runtime.servers import (
    NatsServer,
    create_database,
    drop_database,
    free_port,
    scratch_database_name,
)
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing import eventually
from taskpilot.tenancy import BusinessProfile, SecretBox, Tenant, TenantDirectory, TenantSecrets

pytestmark = pytest.mark.asyncio(loop_scope="session")
TENANT, NUMBER, SECRET = "media", "5550002", "app-secret"
LIMIT = 64 * 1024
ATTEMPTS = 3


@dataclass
class Rig:
    bus: Bus
    ingest: str
    sandbox: str
    media_dir: Path
    stored: list[WhatsAppMediaStored] = field(default_factory=list)
    dead: list[DeadLettered] = field(default_factory=list)

    async def upload(self, data: bytes, mime_type: str, **advertise: Any) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{self.sandbox}/_sandbox/media",
                content=data,
                params={"mime_type": mime_type, **advertise},
            )
        response.raise_for_status()
        return dict(response.json())

    async def fail_media(self, code: int, times: int) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{self.sandbox}/_sandbox/failures",
                json={"code": code, "times": times, "on": "media"},
            )
        response.raise_for_status()

    async def deliver(self, *messages: dict[str, Any]) -> httpx.Response:
        body, headers = signed(webhook(message_value(NUMBER, list(messages))), SECRET)
        async with httpx.AsyncClient() as client:
            return await client.post(
                f"{self.ingest}/webhooks/whatsapp/{TENANT}", content=body, headers=headers
            )

    async def stored_for(self, wamid: str) -> WhatsAppMediaStored:
        async def arrived() -> WhatsAppMediaStored | None:
            return next((m for m in self.stored if m.wamid == wamid), None)

        return await eventually(arrived, timeout=20, what=f"media of {wamid} stored")

    async def dead_letter_for(self, wamid: str) -> DeadLettered:
        async def arrived() -> DeadLettered | None:
            return next((d for d in self.dead if d.correlation_id == wamid), None)

        return await eventually(arrived, timeout=20, what=f"dead letter of {wamid}")

    async def downloads(self) -> int:
        async with httpx.AsyncClient() as client:
            return int(
                (await client.get(f"{self.sandbox}/_sandbox/stats")).json()["media_downloads"]
            )


@pytest.fixture(scope="module")
async def rig(
    postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Rig]:
    nats = NatsServer(tmp_path_factory.mktemp("nats-media")).start()
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
                app_secret=SecretStr(SECRET),
                access_token=SecretStr("EAAtoken"),
                verify_token=SecretStr("v"),
            ),
            phone_number_ids=[NUMBER],
        )
    )
    await pool.close()
    sandbox_port, ingest_port = free_port(), free_port()
    sandbox = uvicorn.Server(uvicorn.Config(create_app(), port=sandbox_port, log_config=None))
    sandbox_task = asyncio.create_task(sandbox.serve())
    data_dir = tmp_path_factory.mktemp("ingest-data")
    settings = IngestSettings(
        nats_url=nats.url,
        database_url=database_url,
        secret_keys=DEV_SECRET_KEYS,
        data_dir=data_dir,
        http_port=ingest_port,
        graph_api_base=f"http://127.0.0.1:{sandbox_port}",
        media_max_bytes=LIMIT,
        media_max_attempts=ATTEMPTS,
        retry_scale=0.05,
        log_json=False,
    )
    app = await create(settings)
    stop = asyncio.Event()
    server = asyncio.create_task(serve([app], stop))
    bus = Bus(nats.url, name="media-rig")
    await bus.connect()
    rig = Rig(
        bus,
        f"http://127.0.0.1:{ingest_port}",
        f"http://127.0.0.1:{sandbox_port}",
        data_dir / "media",
    )

    async def on_stored(msg: Any) -> None:
        rig.stored.append(WhatsAppMediaStored.model_validate_json(msg.data))

    async def on_dead(msg: Any) -> None:
        rig.dead.append(DeadLettered.model_validate_json(msg.data))

    await bus.nc.subscribe(subjects.WA_MEDIA_STORED.wildcard(), cb=on_stored)
    await bus.nc.subscribe(subjects.DEAD_LETTER.wildcard(), cb=on_dead)

    async def ingest_ready() -> bool:
        async with httpx.AsyncClient() as client:
            try:
                return (await client.get(f"{rig.ingest}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

    await eventually(ingest_ready, timeout=20, what="ingest ready")
    try:
        yield rig
    finally:
        stop.set()
        await server
        sandbox.should_exit = True
        await sandbox_task
        await bus.close()
        nats.stop()
        drop_database(postgres_admin_url, dbname)


def lead() -> str:
    return "34" + str(uuid.uuid4().int)[:10]


def wamid() -> str:
    return "wamid." + uuid.uuid4().hex.upper()


def b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


async def test_an_image_is_stored_checked_and_announced(rig: Rig) -> None:
    data = os.urandom(20_000)
    uploaded = await rig.upload(data, "image/jpeg")
    sender, wid = lead(), wamid()
    message = media_message(
        sender, "image", uploaded["id"], "image/jpeg", b64(data), wid, caption="the red one"
    )

    response = await rig.deliver(message)

    assert response.status_code == 200 and response.json()["published"] == 1
    stored = await rig.stored_for(wid)
    assert stored.object_key == f"{TENANT}/{sender}/{wid.replace('.', '_')}.jpg"
    assert (stored.tenant_id, stored.lead, stored.kind) == (TENANT, sender, "image")
    assert (stored.size, stored.mime_type) == (len(data), "image/jpeg")
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.media_id == uploaded["id"] and stored.correlation_id == wid
    assert (rig.media_dir / stored.object_key).read_bytes() == data


@pytest.mark.parametrize(
    ("kind", "mime_type", "extra", "suffix"),
    [
        ("audio", "audio/ogg; codecs=opus", {"voice": True}, ".ogg"),
        ("video", "video/mp4", {}, ".mp4"),
        ("document", "application/pdf", {"filename": "menu.pdf"}, ".pdf"),
        ("sticker", "image/webp", {"animated": False}, ".webp"),
    ],
)
async def test_every_media_kind_is_stored(
    rig: Rig, kind: str, mime_type: str, extra: dict[str, Any], suffix: str
) -> None:
    data = os.urandom(5_000)
    uploaded = await rig.upload(data, mime_type)
    wid = wamid()

    await rig.deliver(media_message(lead(), kind, uploaded["id"], mime_type, None, wid, **extra))

    stored = await rig.stored_for(wid)
    assert stored.kind == kind and stored.object_key.endswith(suffix)
    assert (rig.media_dir / stored.object_key).read_bytes() == data


async def test_text_messages_are_passed_over(rig: Rig) -> None:
    text_wid, image_wid = wamid(), wamid()
    data = os.urandom(1_000)
    uploaded = await rig.upload(data, "image/png")

    await rig.deliver(
        text_message(lead(), "hello", text_wid),
        media_message(lead(), "image", uploaded["id"], "image/png", None, image_wid),
    )

    await rig.stored_for(image_wid)

    async def consumer_idle() -> bool:
        spec = media_spec(ATTEMPTS)
        info = await rig.bus.js.consumer_info(spec.stream.name, spec.durable)
        return info.num_pending == 0 and info.num_ack_pending == 0

    await eventually(consumer_idle, timeout=10, what="media consumer idle")
    assert not [m for m in rig.stored if m.wamid == text_wid]


async def test_a_transient_graph_error_is_retried_and_the_media_stored_once(rig: Rig) -> None:
    data = os.urandom(3_000)
    uploaded = await rig.upload(data, "image/jpeg")
    await rig.fail_media(2, times=2)  # "API Service", Meta's temporary failure
    wid = wamid()

    await rig.deliver(media_message(lead(), "image", uploaded["id"], "image/jpeg", None, wid))

    stored = await rig.stored_for(wid)
    assert stored.size == len(data)
    assert [m.wamid for m in rig.stored].count(wid) == 1
    assert not [d for d in rig.dead if d.correlation_id == wid]


async def test_an_unknown_media_id_is_dead_lettered_with_meta_s_error(rig: Rig) -> None:
    wid = wamid()

    await rig.deliver(media_message(lead(), "image", "1234567890123456", "image/jpeg", None, wid))

    letter = await rig.dead_letter_for(wid)
    assert letter.reason == "media_graph_error" and "Graph API error 100" in letter.error
    assert letter.origin == "ingest-media" and letter.attempts == 1


async def test_media_over_the_limit_is_refused_before_the_download(rig: Rig) -> None:
    uploaded = await rig.upload(os.urandom(LIMIT + 1), "video/mp4")
    before = await rig.downloads()
    wid = wamid()

    await rig.deliver(media_message(lead(), "video", uploaded["id"], "video/mp4", None, wid))

    letter = await rig.dead_letter_for(wid)
    assert letter.reason == "media_too_large" and f"limit of {LIMIT}" in letter.error
    assert await rig.downloads() == before


async def test_media_larger_than_meta_said_is_cut_off_while_reading(rig: Rig) -> None:
    uploaded = await rig.upload(os.urandom(LIMIT * 2), "image/jpeg", file_size=1_000)
    wid = wamid()

    await rig.deliver(media_message(lead(), "image", uploaded["id"], "image/jpeg", None, wid))

    letter = await rig.dead_letter_for(wid)
    assert letter.reason == "media_too_large"
    assert not list(rig.media_dir.rglob(f"{wid.replace('.', '_')}*"))


async def test_a_checksum_mismatch_is_read_again_then_dead_lettered(rig: Rig) -> None:
    data = os.urandom(2_000)
    uploaded = await rig.upload(data, "image/jpeg", sha256=hashlib.sha256(b"other").hexdigest())
    before = await rig.downloads()
    wid = wamid()

    await rig.deliver(media_message(lead(), "image", uploaded["id"], "image/jpeg", None, wid))

    letter = await rig.dead_letter_for(wid)
    assert letter.reason == "media_checksum_mismatch" and letter.attempts == ATTEMPTS
    assert await rig.downloads() - before == ATTEMPTS
    assert not [m for m in rig.stored if m.wamid == wid]


async def test_the_webhook_s_own_sha256_is_checked_too(rig: Rig) -> None:
    data = os.urandom(2_000)
    uploaded = await rig.upload(data, "image/jpeg")
    wid = wamid()

    await rig.deliver(
        media_message(lead(), "image", uploaded["id"], "image/jpeg", b64(b"not it"), wid)
    )

    letter = await rig.dead_letter_for(wid)
    assert letter.reason == "media_checksum_mismatch"


async def test_media_of_a_tenant_that_is_gone_is_dead_lettered_at_once(rig: Rig) -> None:
    wid = wamid()
    message = WhatsAppMessageReceived(
        tenant_id="gone",
        correlation_id=wid,
        wamid=wid,
        phone_number_id=NUMBER,
        lead=lead(),
        wa_timestamp=datetime.now(UTC),
        content=MediaContent(kind="image", media_id="1234567890123456"),
    )

    await rig.bus.publish(message, msg_id=wid)

    letter = await rig.dead_letter_for(wid)
    assert (letter.reason, letter.attempts, letter.tenant_id) == ("unknown_tenant", 1, "gone")
