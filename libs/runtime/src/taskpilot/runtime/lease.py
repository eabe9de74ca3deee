"""One process at a time for an ordered consumer: a lease in a JetStream KV bucket.

An ordered consumer keeps per-key order by running each key's deliveries one after another in
one process. Its lease (key = consumer name) says which process that is: taken with a
compare-and-set, renewed every ``renew_s``, released on a graceful stop. A process that died
leaves a lease nobody renews; another takes it over

* at once when the consumer has nothing unacknowledged (the dead one held nothing), or
* once it expires, ``ack_wait`` plus a margin after the last renewal: by then the dead
  process's deliveries are due for redelivery, and JetStream redelivers them before newer
  messages, so a key's order survives the failover.

A holder that cannot renew before its own expiry stops pulling (``held`` turns False).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

from nats.errors import ConnectionClosedError
from nats.js import JetStreamContext
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from taskpilot.runtime.kv import key_value

log = logging.getLogger(__name__)

BUCKET = "taskpilot_consumer_leases"
WRONG_LAST_SEQUENCE = 10071  # JetStream's err_code for a failed expected-last-sequence check


async def lease_bucket(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    return await key_value(js, BUCKET, replicas=replicas)


def owner_id(name: str) -> str:
    return f"{name}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Lease:
    def __init__(
        self,
        bucket: Callable[[], Awaitable[KeyValue]],
        name: str,
        owner: str,
        ttl_s: float,
        *,
        renew_s: float = 2.0,
        idle: Callable[[], Awaitable[bool]] | None = None,
        poll_s: float = 0.5,
    ):
        self._bucket = bucket
        self.name = name
        self.owner = owner
        self.ttl_s = ttl_s
        self.renew_s = renew_s
        self._idle = idle
        self._poll_s = poll_s
        self._revision: int | None = None
        self._expires_at = 0.0
        self._renewer: asyncio.Task[None] | None = None

    @property
    def held(self) -> bool:
        # A renewal's margin early: whoever waits for our expiry must not overlap with us.
        return self._revision is not None and time.time() < self._expires_at - self.renew_s

    def _value(self) -> tuple[bytes, float]:
        now = time.time()
        expires = now + self.ttl_s
        value = {"owner": self.owner, "renewed_at": now, "expires_at": expires}
        return json.dumps(value).encode(), expires

    async def acquire(self) -> None:
        """Wait until this process holds the lease (cancel to give up)."""
        while not self.held:
            try:
                await self._try_acquire()
            except (TimeoutError, KeyWrongLastSequenceError, OSError) as exc:
                log.debug("lease %s not taken: %r", self.name, exc)
            except Exception as exc:  # NATS unavailable for a moment (restart, election)
                log.info("lease %s: %r", self.name, exc)
            if not self.held:
                await asyncio.sleep(self._poll_s)
        log.info("lease %s taken by %s", self.name, self.owner)
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_forever(), name=f"lease-{self.name}")

    async def _try_acquire(self) -> None:
        kv = await self._bucket()
        value, expires = self._value()
        try:
            entry = await kv.get(self.name)
        except KeyNotFoundError:  # never taken, or released (deleted)
            self._revision, self._expires_at = await kv.create(self.name, value), expires
            return
        current = json.loads(entry.value or b"{}")
        now = time.time()
        stale = now - float(current.get("renewed_at", 0)) > 3 * self.renew_s
        expired = now > float(current.get("expires_at", 0))
        if expired or (stale and self._idle is not None and await self._idle()):
            assert entry.revision is not None
            self._revision = await kv.update(self.name, value, last=entry.revision)
            self._expires_at = expires

    async def _renew_forever(self) -> None:
        while self._revision is not None:
            await asyncio.sleep(self.renew_s)
            if self._revision is None:
                return
            try:
                kv = await self._bucket()
                value, expires = self._value()
                self._revision = await kv.update(self.name, value, last=self._revision)
                self._expires_at = expires
            except KeyWrongLastSequenceError:
                log.warning("lease %s was taken over; this process stops pulling", self.name)
                self._revision = None
            except ConnectionClosedError:
                # Our connection was closed for good (a stop that skipped release): nobody
                # will renew through it again, and the lease lapses at its expiry.
                log.info("lease %s: connection closed; renewals end", self.name)
                self._revision = None
            except Exception as exc:  # keep trying until our own expiry
                log.info("lease %s renewal failed: %r", self.name, exc)

    async def release(self) -> None:
        # The renewer first: a renewal in flight would otherwise land after we read the
        # revision, and the delete below would miss (the lease then lapsing only at expiry).
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            await asyncio.wait([renewer], timeout=5.0)
        revision, self._revision = self._revision, None
        if revision is None:
            return
        try:
            kv = await self._bucket()
            try:
                await kv.delete(self.name, last=revision)
            except APIError as exc:  # delete reports a wrong revision as a plain API error
                if exc.err_code != WRONG_LAST_SEQUENCE:
                    raise
                # A renewal cancelled in flight may still have been stored: if the lease is
                # still ours, release that revision.
                entry = await kv.get(self.name)
                if json.loads(entry.value or b"{}").get("owner") != self.owner:
                    return
                await kv.delete(self.name, last=entry.revision)
            log.info("lease %s released by %s", self.name, self.owner)
        except Exception as exc:
            log.warning("lease %s not released (it lapses at its expiry): %r", self.name, exc)
