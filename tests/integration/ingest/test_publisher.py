"""The webhook's pipelined publisher against a real nats-server: the same promises as
Bus.publish (stored once per Nats-Msg-Id, duplicates told, nothing confirmed -> PublishError)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest

from taskpilot.contracts import subjects
from taskpilot.contracts.whatsapp import TextContent, WhatsAppMessageReceived
from taskpilot.ingest.adapters import PipelinedPublisher
from taskpilot.runtime.bus import Bus, PublishError, ensure_streams
from taskpilot.runtime.servers import NatsServer

pytestmark = pytest.mark.asyncio(loop_scope="session")


def received(wamid: str) -> WhatsAppMessageReceived:
    return WhatsAppMessageReceived(
        tenant_id="pub",
        correlation_id=wamid,
        wamid=wamid,
        phone_number_id="555",
        lead="34600000001",
        wa_timestamp=datetime.now(UTC),
        content=TextContent(body="hola"),
    )


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(
        tmp_path_factory.mktemp("nats-publisher")
    ).start()  # its streams get deleted
    yield server
    server.stop()


@pytest.fixture
async def bus(nats: NatsServer) -> AsyncIterator[Bus]:
    bus = Bus(nats.url, name="publisher-test", publish_retry_s=0.5)
    await bus.connect()
    await ensure_streams(bus.js)
    yield bus
    await bus.close()


async def test_many_publishes_in_flight_are_each_stored_once(bus: Bus) -> None:
    publisher = PipelinedPublisher(bus)
    await publisher.start()
    messages = [received(f"wamid.{uuid.uuid4().hex}") for _ in range(200)]
    before = (await bus.js.stream_info(subjects.WHATSAPP_IN.name)).state.messages

    fresh = await asyncio.gather(*(publisher.publish(m, msg_id=m.wamid) for m in messages))
    again = await asyncio.gather(*(publisher.publish(m, msg_id=m.wamid) for m in messages[:10]))

    assert all(fresh) and not any(again)
    after = (await bus.js.stream_info(subjects.WHATSAPP_IN.name)).state.messages
    assert after - before == 200
    stored = await bus.js.get_last_msg(
        subjects.WHATSAPP_IN.name, "wa.inp.*.pub.34600000001.message"
    )
    assert stored.headers is not None and stored.headers["Nats-Msg-Id"] == messages[-1].wamid
    assert WhatsAppMessageReceived.model_validate_json(stored.data or b"") == messages[-1]


async def test_a_given_body_is_published_as_is(bus: Bus) -> None:
    publisher = PipelinedPublisher(bus)
    await publisher.start()
    message = received(f"wamid.{uuid.uuid4().hex}")

    assert await publisher.publish(message, msg_id=message.wamid, body=message.to_bytes())


async def test_a_publish_nobody_stores_is_an_error_after_the_retry_deadline(bus: Bus) -> None:
    publisher = PipelinedPublisher(bus)
    await publisher.start()
    await bus.js.delete_stream(subjects.WHATSAPP_IN.name)
    try:
        with pytest.raises(PublishError):
            await publisher.publish(received("wamid.lost"), msg_id="wamid.lost")
    finally:
        await ensure_streams(bus.js)
