"""Contract of the media object store, run against every adapter: a local directory, and S3
spoken over HTTP to moto's S3 server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from moto.server import ThreadedMotoServer

from taskpilot.ingest.adapters import ObjectNotFoundError, ObjectStore, Obstore
from taskpilot.runtime.servers import free_port

if TYPE_CHECKING:
    from obstore.store import S3Config

pytestmark = pytest.mark.asyncio(loop_scope="session")
BUCKET = "taskpilot-media"


def s3_config(endpoint: str) -> S3Config:
    return {
        "endpoint": endpoint,
        "access_key_id": "testing",
        "secret_access_key": "testing",
        "region": "us-east-1",
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


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return Obstore.from_url(f"file://{tmp_path / 'media'}")
    endpoint = request.getfixturevalue("s3_endpoint")
    prefix = os.urandom(4).hex()  # one prefix per test: the bucket is shared
    return Obstore.from_url(
        f"s3://{BUCKET}/{prefix}",
        allow_http=True,
        s3_config=s3_config(endpoint),
    )


async def test_what_is_put_is_got_back_whole(store: ObjectStore) -> None:
    data = os.urandom(300_000)

    await store.put("shop/34600000001/wamid_A.jpg", data, "image/jpeg")

    assert await store.get("shop/34600000001/wamid_A.jpg") == data
    assert await store.size_of("shop/34600000001/wamid_A.jpg") == len(data)


async def test_putting_a_key_again_replaces_the_object(store: ObjectStore) -> None:
    await store.put("shop/lead/k.ogg", b"first version, longer", "audio/ogg")
    await store.put("shop/lead/k.ogg", b"second", "audio/ogg")

    assert await store.get("shop/lead/k.ogg") == b"second"
    assert await store.size_of("shop/lead/k.ogg") == len(b"second")


async def test_a_missing_object_is_told_apart(store: ObjectStore) -> None:
    assert await store.size_of("shop/lead/none.jpg") is None
    with pytest.raises(ObjectNotFoundError):
        await store.get("shop/lead/none.jpg")


async def test_delete_removes_and_deleting_nothing_is_fine(store: ObjectStore) -> None:
    await store.put("shop/lead/d.pdf", b"%PDF-1.7", "application/pdf")

    await store.delete("shop/lead/d.pdf")
    await store.delete("shop/lead/d.pdf")

    assert await store.size_of("shop/lead/d.pdf") is None


async def test_empty_objects_are_objects(store: ObjectStore) -> None:
    await store.put("shop/lead/empty.bin", b"", "application/octet-stream")

    assert await store.get("shop/lead/empty.bin") == b""
    assert await store.size_of("shop/lead/empty.bin") == 0
