"""Ingest as its own process (``python -m taskpilot.ingest``) on a fresh nats-server and a
scratch database with one tenant, for the tests of its HTTP surface."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from taskpilot.runtime.servers import (
    NatsServer,
    create_database,
    drop_database,
    free_port,
    scratch_database_name,
)
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing import ServiceProcess
from tests.integration.ingest.tenant import MAX_BODY, seed


@pytest.fixture(scope="module")
async def ingest_url(
    postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    tmp = tmp_path_factory.mktemp("ingest-http")
    nats = NatsServer(tmp / "nats").start()
    dbname = scratch_database_name()
    database_url = create_database(postgres_admin_url, dbname)
    await seed(database_url)
    port = free_port()
    ingest = ServiceProcess(
        "taskpilot.ingest",
        env={
            "NATS_URL": nats.url,
            "DATABASE_URL": database_url,
            "TASKPILOT_SECRET_KEYS": DEV_SECRET_KEYS,
            "TASKPILOT_DATA_DIR": str(tmp / "data"),
            "TASKPILOT_INGEST_HTTP_PORT": str(port),
            # fuzzed media ids go nowhere: a closed port, retried then dead-lettered
            "TASKPILOT_INGEST_GRAPH_API_BASE": f"http://127.0.0.1:{free_port()}",
            "TASKPILOT_INGEST_MAX_BODY_BYTES": str(MAX_BODY),
            "TASKPILOT_LOG_LEVEL": "WARNING",
        },
        port=port,
        log_path=tmp / "ingest.log",
    ).start()
    try:
        await ingest.wait_ready(timeout=60)
        yield ingest.base_url
    finally:
        code = ingest.stop()
        nats.stop()
        drop_database(postgres_admin_url, dbname)
        assert code in (0, -15), f"ingest exited with {code}; see {tmp / 'ingest.log'}"
