"""Contract of the archive store (``ArchiveStore``), run against every adapter: a local
directory, memory, and S3 spoken over HTTP to moto's S3 server on loopback. Then the archive
job configured the way an operator configures it (an ``s3://`` URL and the usual ``AWS_*``
variables, in a ``taskpilot lifecycle archive`` process), and a restore from that bucket."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from taskpilot.conversation import archive as fmt
from taskpilot.conversation.archive import ArchiveStore, ObjectArchive, StoredRow
from taskpilot.conversation.domain import conversation_id
from taskpilot.conversation.lifecycle import Lifecycle
from taskpilot.runtime.servers import free_port
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from tests.integration.lifecycle.conftest import World, add_tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

BUCKET = "taskpilot-archive"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


def s3_archive(endpoint: str, prefix: str) -> ObjectArchive:
    return ObjectArchive.from_url(
        f"s3://{BUCKET}/{prefix}",
        endpoint=endpoint,
        access_key_id="testing",
        secret_access_key="testing",
        region="us-east-1",
        client_options={"allow_http": True},
    )


@pytest.fixture(params=["local", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArchiveStore:
    if request.param == "local":
        return ObjectArchive.from_url(str(tmp_path / "archive"))
    if request.param == "memory":
        return ObjectArchive.from_url("memory://")
    return s3_archive(request.getfixturevalue("s3_endpoint"), os.urandom(4).hex())


def rows() -> list[StoredRow]:
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    return [
        StoredRow(v, 100 + v, f"taskpilot.conversation.domain:Conversation.E{v}", bytes([v]), at)
        for v in range(1, 6)
    ]


async def test_an_archive_object_is_got_back_byte_for_byte(store: ArchiveStore) -> None:
    data = fmt.encode("shop", "34600000001", str(uuid.uuid4()), rows())
    key = fmt.object_key("shop", uuid.uuid4())

    await store.put(key, data)

    got = await store.get(key)
    assert got == data
    assert fmt.decode(got).rows == rows()


async def test_put_replaces_and_a_missing_key_is_none(store: ArchiveStore) -> None:
    await store.put("shop/conversations/a.json.gz", b"first, longer version")
    await store.put("shop/conversations/a.json.gz", b"second")

    assert await store.get("shop/conversations/a.json.gz") == b"second"
    assert await store.get("shop/conversations/missing.json.gz") is None


async def test_delete_removes_and_deleting_a_missing_key_is_no_error(store: ArchiveStore) -> None:
    await store.put("shop/conversations/b.json.gz", b"x")

    await store.delete("shop/conversations/b.json.gz")
    await store.delete("shop/conversations/b.json.gz")

    assert await store.get("shop/conversations/b.json.gz") is None


async def test_the_archive_job_writes_to_s3_and_restores_from_it(
    world: World, s3_endpoint: str
) -> None:
    tenant = "lz" + uuid.uuid4().hex[:6]
    await add_tenant(world.tenants, tenant)
    leads = world.seed(tenant, 30)
    before = {lead: history(world, tenant, lead) for lead in leads}
    prefix = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        **CREDENTIALS,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ALLOW_HTTP": "true",
        "DATABASE_URL": world.database_url,
        "NATS_URL": world.settings.nats_url,
        "TASKPILOT_SECRET_KEYS": DEV_SECRET_KEYS,
        "TASKPILOT_CONVERSATION_ARCHIVE_URL": f"s3://{BUCKET}/{prefix}",
    }
    command = [sys.executable, "-m", "taskpilot.cli", "lifecycle", "archive"]
    command += ["--tenant", tenant, "--days-ahead", "100"]
    job = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, err = await asyncio.wait_for(job.communicate(), 120)
    assert job.returncode == 0, err.decode()[-2000:]

    assert all(world.hot_events(tenant, lead) == 0 for lead in leads)
    assert not any(world.archived_object(tenant, lead) for lead in leads)  # not on local disk
    keys = bucket_keys(s3_endpoint, f"{prefix}/{tenant}/conversations/")
    assert keys == {
        f"{prefix}/{fmt.object_key(tenant, conversation_id(tenant, lead))}" for lead in leads
    }

    lifecycle = Lifecycle(
        world.app, world.lifecycle.store, s3_archive(s3_endpoint, prefix), world.tenants, None
    )
    lead = leads[7]
    assert await lifecycle.restore(tenant, conversation_id(tenant, lead), "operator")
    assert history(world, tenant, lead) == before[lead]
    assert len(bucket_keys(s3_endpoint, f"{prefix}/{tenant}/conversations/")) == 29


def history(world: World, tenant: str, lead: str) -> str:
    return json.dumps(world.app.history_of(tenant, conversation_id(tenant, lead)))


def bucket_keys(endpoint: str, prefix: str) -> set[Any]:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"] for o in listed.get("Contents", [])}
