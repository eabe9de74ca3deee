"""The message bus: typed publish (after commit, with ``Nats-Msg-Id``), request-reply, and
idempotent JetStream stream provisioning.

JetStream subscriptions (:func:`taskpilot.runtime.consumer.subscribe`) run on the pull engine
of :mod:`taskpilot.runtime.pulling` over the bus's nats-py connection; the FastStream broker
hosts core request-reply subscribers. :meth:`Bus.drain` is the graceful stop of every consumer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, TypeVar

import nats
from faststream.nats import NatsBroker
from faststream.nats.security import NatsUserPassword
from nats.aio.client import DEFAULT_INBOX_PREFIX
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    SubjectTransform,
)
from nats.js.errors import NoStreamResponseError, NotFoundError, ServiceUnavailableError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from taskpilot.contracts import Message
from taskpilot.contracts.subjects import ALL_STREAMS, Stream
from taskpilot.runtime import metrics
from taskpilot.runtime.lease import Lease, lease_bucket, owner_id
from taskpilot.runtime.pulling import Process, PullConsumer, PullSettings
from taskpilot.runtime.settings import NatsCredentials
from taskpilot.runtime.telemetry import inject_headers
from taskpilot.tenancy.context import TENANT_HEADER

if TYPE_CHECKING:
    from taskpilot.runtime.consumer import ConsumerSpec

log = logging.getLogger(__name__)

R = TypeVar("R", bound=BaseModel)

MSG_ID = "Nats-Msg-Id"


_UNCONFIRMED = (
    NatsTimeoutError,
    NoRespondersError,
    NoStreamResponseError,  # no stream leader for a moment: a JetStream election
    ServiceUnavailableError,
)
"""Publish failures that a retry with the same Nats-Msg-Id may resolve."""


class PublishError(RuntimeError):
    """The bus did not confirm a publish within the retry deadline."""


class RequestError(RuntimeError):
    """A request-reply call got no (valid) answer."""


def headers_for(message: Message, msg_id: str | None = None) -> dict[str, str]:
    headers = {
        MSG_ID: msg_id or str(message.event_id),
        TENANT_HEADER: message.tenant_id,
        "Message-Type": message.type,
        "Correlation-Id": message.correlation_id,
    }
    return dict(inject_headers(headers))


class Bus:
    def __init__(
        self,
        url: str,
        *,
        name: str,
        publish_retry_s: float = 15.0,
        replicas: int = 1,
        drain_timeout_s: float = 20.0,
        fair: bool = True,
        credentials: NatsCredentials | None = None,
    ):
        self.url = url
        self.name = name
        self.publish_retry_s = publish_retry_s
        self.replicas = replicas
        self.drain_timeout_s = drain_timeout_s
        self.fair = fair
        self.consumers: list[PullConsumer] = []
        self._started = False
        self._leases: KeyValue | None = None
        # FastStream logs every subscriber start at INFO; ours are reported by the host.
        self.servers = [u.strip() for u in url.split(",") if u.strip()]  # a cluster: a,b,c
        # Without users every reply inbox is _INBOX.>; with one, its own (the only one it
        # may read, see taskpilot.runtime.permissions).
        self._auth: dict[str, str] = {}
        security = None
        if credentials is not None:
            self._auth = {
                "user": credentials.user,
                "password": credentials.password,
                "inbox_prefix": credentials.inbox_prefix,
            }
            security = NatsUserPassword(credentials.user, credentials.password)
        self.broker = NatsBroker(
            self.servers,
            name=f"taskpilot-{name}",
            max_reconnect_attempts=-1,
            logger=logging.getLogger("taskpilot.faststream"),
            log_level=logging.DEBUG,
            security=security,
            inbox_prefix=self._auth.get("inbox_prefix", DEFAULT_INBOX_PREFIX),
        )
        self._nc: NatsClient | None = None

    @property
    def js(self) -> JetStreamContext:
        assert self._nc is not None, "Bus.connect() first"
        return self._nc.jetstream()

    @property
    def nc(self) -> NatsClient:
        assert self._nc is not None, "Bus.connect() first"
        return self._nc

    async def connect(self) -> None:
        self._nc = await nats.connect(
            self.servers,
            name=f"taskpilot-{self.name}-admin",
            max_reconnect_attempts=-1,
            **self._auth,
        )

    def add_consumer(self, spec: ConsumerSpec, process: Process) -> PullConsumer:
        """Run ``process`` for every delivery of ``spec``'s durable consumer (from start)."""
        policy = spec.policy
        # Without fairness (for comparison): stream order, as many in flight as workers, and
        # one at a time for an ordered consumer (the behaviour before ADR 7).
        lookahead = policy.lookahead if self.fair else (1 if policy.ordered else policy.workers)
        settings = PullSettings(
            stream=spec.stream.name,
            durable=spec.durable,
            filter_subject=spec.filter_subject,
            ack_wait_s=policy.ack_wait_s,
            max_deliver=policy.max_deliver,
            workers=policy.workers,
            lookahead=lookahead,
            tenant_cap=policy.tenant_cap if self.fair else policy.workers,
            ordered=policy.ordered,
            # An ordered consumer waits for its open pull request to end before it hands its
            # deliveries back on stop (see PullConsumer.stop): keep those requests short.
            expires_s=2.0 if policy.ordered else 5.0,
            heartbeat_s=0.5 if policy.ordered else 1.0,
        )
        lease = None
        if policy.ordered:

            async def idle() -> bool:
                info = await self.js.consumer_info(spec.stream.name, spec.durable)
                return not info.num_ack_pending

            lease = Lease(
                self._lease_bucket,
                f"{spec.stream.name}.{spec.durable}",
                owner_id(self.name),
                ttl_s=policy.ack_wait_s + 6.0,
                idle=idle,
            )
        consumer = PullConsumer(lambda: self.nc, lambda: self.js, settings, process, lease)
        self.consumers.append(consumer)
        if self._started:
            asyncio.get_running_loop().create_task(consumer.start())
        return consumer

    async def _lease_bucket(self) -> KeyValue:
        if self._leases is None:
            self._leases = await lease_bucket(self.js, self.replicas)
        return self._leases

    async def start(self) -> None:
        await self.broker.start()
        for consumer in self.consumers:
            if not consumer.started:
                await consumer.start()
        self._started = True

    async def drain(self, timeout: float | None = None) -> None:
        """Graceful stop of every consumer: no new pulls, unstarted deliveries handed back,
        running handlers finish and ack (within ``timeout``, default ``drain_timeout_s``)."""
        timeout = self.drain_timeout_s if timeout is None else timeout
        self._started = False
        await asyncio.gather(*(c.stop(timeout) for c in self.consumers))

    async def close(self) -> None:
        await self.drain()
        await self.broker.stop()
        if self._nc is not None:
            await self._nc.drain()
            self._nc = None

    async def is_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def publish(self, message: Message, *, msg_id: str | None = None) -> bool:
        """Publish to JetStream and wait for the ack. Returns False for a duplicate.

        Retries on timeouts for ``publish_retry_s`` (time-based, so a leader election does not
        lose the message); the same ``Nats-Msg-Id`` makes the retries safe.
        """
        channel = message.CHANNEL
        stream: Stream = channel.stream
        return await self.publish_raw(
            message.subject(), message.to_bytes(), headers_for(message, msg_id), stream.name
        )

    async def publish_raw(
        self, subject: str, body: bytes, headers: dict[str, str], stream: str
    ) -> bool:
        return not (await self.publish_ack(subject, body, headers, stream)).duplicate

    async def publish_ack(
        self, subject: str, body: bytes, headers: dict[str, str], stream: str
    ) -> PubAck:
        """Publish and return JetStream's ack (sequence, duplicate), retrying like publish."""
        deadline = time.monotonic() + self.publish_retry_s
        delay = 0.05
        while True:
            try:
                ack = await self.js.publish(subject, body, headers=headers, stream=stream)
                metrics.BUS_PUBLISHED.labels(stream=stream).inc()
                return ack
            except _UNCONFIRMED as exc:
                if time.monotonic() + delay > deadline:
                    raise PublishError(f"publish to {subject} not confirmed: {exc!r}") from exc
                log.warning("publish to %s not confirmed, retrying: %r", subject, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def request(self, message: Message, reply_type: type[R], *, timeout: float = 2.0) -> R:
        """Core NATS request-reply (never stored) with a typed answer."""
        try:
            reply = await self.nc.request(
                message.subject(), message.to_bytes(), timeout=timeout, headers=headers_for(message)
            )
        except (NatsTimeoutError, NoRespondersError) as exc:
            raise RequestError(f"{message.subject()}: no answer ({exc!r})") from exc
        return reply_type.model_validate_json(reply.data)


def stream_config(stream: Stream, replicas: int = 1) -> StreamConfig:
    transform = None
    if stream.partitioning is not None:
        transform = SubjectTransform(
            src=stream.partitioning.source, dest=stream.partitioning.destination
        )
    return StreamConfig(
        name=stream.name,
        description=stream.description,
        subjects=list(stream.subjects),
        storage=StorageType.FILE,
        retention=RetentionPolicy.WORK_QUEUE if stream.work_queue else RetentionPolicy.LIMITS,
        num_replicas=replicas,
        duplicate_window=stream.duplicate_window_s,
        max_age=stream.max_age_s,
        subject_transform=transform,
    )


async def ensure_streams(
    js: JetStreamContext, streams: tuple[Stream, ...] = ALL_STREAMS, replicas: int = 1
) -> None:
    """Create, or update where changed, every stream; safe to run from every replica at
    start-up. A service's NATS user may create the declared streams but not change them
    (:mod:`taskpilot.runtime.permissions`): an unchanged stream is left alone."""
    for stream in streams:
        config = stream_config(stream, replicas)
        try:
            current = (await js.stream_info(stream.name)).config
        except NotFoundError:
            try:
                await js.add_stream(config)
                continue
            except Exception as exc:  # another replica created it first
                log.info("stream %s: %r, updating instead", stream.name, exc)
            current = (await js.stream_info(stream.name)).config
        if _differs(current, config):
            try:
                await js.update_stream(config)
            except NatsTimeoutError as exc:  # a refused API request is never answered
                raise PermissionError(
                    f"stream {stream.name} needs an update this NATS user may not make: run "
                    "`taskpilot nats provision` as the admin user"
                ) from exc


def _differs(current: StreamConfig, wanted: StreamConfig) -> bool:
    def transform(c: StreamConfig) -> tuple[str | None, str | None] | None:
        t = c.subject_transform
        return None if t is None else (t.src, t.dest)

    return (
        sorted(current.subjects or []) != sorted(wanted.subjects or [])
        or (current.description or "") != (wanted.description or "")
        or (current.num_replicas or 1) != (wanted.num_replicas or 1)
        or abs((current.duplicate_window or 0) - (wanted.duplicate_window or 0)) > 1e-3
        or abs((current.max_age or 0) - (wanted.max_age or 0)) > 1e-3
        or transform(current) != transform(wanted)
    )


async def stream_state(js: JetStreamContext, name: str) -> dict[str, Any]:
    info = await js.stream_info(name)
    return {"messages": info.state.messages, "last_seq": info.state.last_seq}
