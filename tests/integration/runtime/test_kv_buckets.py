"""KV buckets of the runtime and services against a real nats-server: created with the
configured replicas, opened by many processes at once, an existing bucket left as it is."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js import JetStreamContext

from taskpilot.runtime.kv import key_value
from taskpilot.runtime.servers import NatsServer

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream()
    await nc.close()


async def test_a_new_bucket_has_the_configured_replicas_history_and_ttl(
    js: JetStreamContext,
) -> None:
    bucket = f"test_kv_{uuid.uuid4().hex[:8]}"
    kv = await key_value(js, bucket, replicas=1, ttl=60.0)
    config = (await kv.status()).stream_info.config
    assert (config.num_replicas, config.max_msgs_per_subject, config.max_age) == (1, 1, 60.0)


async def test_processes_starting_together_share_one_bucket(js: JetStreamContext) -> None:
    bucket = f"test_kv_{uuid.uuid4().hex[:8]}"
    opened = await asyncio.gather(*(key_value(js, bucket) for _ in range(8)))
    await opened[0].put("k", b"v")
    assert [(await kv.get("k")).value for kv in opened] == [b"v"] * 8


async def test_an_existing_bucket_keeps_its_replicas_and_says_how_to_raise_them(
    js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = f"test_kv_{uuid.uuid4().hex[:8]}"
    await (await key_value(js, bucket)).put("k", b"kept")
    with caplog.at_level(logging.WARNING, logger="taskpilot.runtime.kv"):
        kv = await key_value(js, bucket, replicas=3)  # one server: 3 could never be created
    assert (await kv.get("k")).value == b"kept"
    assert f"nats stream edit KV_{bucket} --replicas 3" in caplog.text
