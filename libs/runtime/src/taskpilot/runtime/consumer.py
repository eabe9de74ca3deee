"""The uniform consumer policy: durable pull consumers, explicit ack, backoff, dead letters.

Every subscription of every service goes through :func:`subscribe`. A handler receives a typed
contract and either returns (ack), raises :class:`PermanentError` or fails validation (dead
letter at once: retrying cannot help), or raises anything else (retry after the backoff
schedule; after ``max_deliver`` attempts, a dead letter with the cause). FastStream's own
ack policies are not used (see FIELD-NOTES: they either drop or hot-loop).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from faststream import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsMessage, PullSub
from nats.aio.msg import Msg

from taskpilot.contracts import Message
from taskpilot.contracts.dlq import UNKNOWN_TENANT, DeadLettered
from taskpilot.contracts.subjects import Stream
from taskpilot.runtime import metrics
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.telemetry import context_from_headers, correlation_id, tracer
from taskpilot.tenancy.context import TENANT_HEADER, tenant_scope

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

_attempt: ContextVar[int] = ContextVar("taskpilot_delivery_attempt", default=1)


def current_attempt() -> int:
    """Which delivery of the current message this is (1 = first)."""
    return _attempt.get()


Handler = Callable[[M], Awaitable[None]]


class RetryLater(Exception):
    """Retry after ``delay`` seconds instead of the policy's schedule (e.g. Meta's 4^X)."""

    def __init__(self, delay: float, reason: str):
        super().__init__(reason)
        self.delay = delay


class PermanentError(Exception):
    """The message can never be processed; dead-letter it now instead of retrying."""

    def __init__(self, message: str, reason: str = "permanent_error"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ConsumerPolicy:
    max_deliver: int = 5
    ack_wait_s: float = 30.0
    backoff_s: tuple[float, ...] = (0.2, 1.0, 5.0, 15.0)
    max_ack_pending: int = 256
    workers: int = 8
    ordered: bool = False
    """One message in flight at a time for this consumer: per-partition order."""

    def delay(self, attempt: int) -> float:
        return self.backoff_s[min(attempt - 1, len(self.backoff_s) - 1)]


@dataclass(frozen=True)
class ConsumerSpec:
    durable: str
    stream: Stream
    filter_subject: str
    policy: ConsumerPolicy = field(default_factory=ConsumerPolicy)


class Parser(Protocol):
    TYPE: str

    def model_validate_json(self, data: bytes) -> Any:
        """The message, or None to skip it (ack without handling)."""
        ...


def subscribe(
    bus: Bus, spec: ConsumerSpec, message_type: type[M] | Parser, handler: Handler[M]
) -> None:
    policy = spec.policy
    tracer_ = tracer(bus.name)

    async def dead_letter(raw: Msg, reason: str, error: str, tenant: str | None) -> None:
        md = raw.metadata
        body = raw.data
        try:
            payload, encoding = body.decode(), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(body).decode(), "base64"
        letter = DeadLettered(
            tenant_id=tenant or UNKNOWN_TENANT,
            correlation_id=(raw.headers or {}).get(
                "Correlation-Id", f"{md.stream}:{md.sequence.stream}"
            ),
            origin=spec.durable,
            reason=reason,
            error=error[:2000],
            original_subject=raw.subject,
            stream=md.stream,
            stream_seq=md.sequence.stream,
            attempts=md.num_delivered,
            headers=dict(raw.headers or {}),
            payload=payload,
            payload_encoding=encoding,
        )
        await bus.publish(letter, msg_id=f"dlq:{md.stream}:{md.sequence.stream}")
        metrics.DEAD_LETTERS.labels(origin=spec.durable, reason=reason).inc()
        log.error("dead-lettered %s seq %s: %s", md.stream, md.sequence.stream, error)

    async def keep_alive(raw: Msg) -> None:
        # A handler slower than ack_wait would otherwise get a duplicate delivery.
        while True:
            await asyncio.sleep(policy.ack_wait_s / 3)
            await raw.in_progress()

    async def consume(body: Any, msg: NatsMessage) -> None:
        raw: Msg = msg.raw_message
        attempt = raw.metadata.num_delivered
        if attempt > 1:
            metrics.REDELIVERED.labels(consumer=spec.durable).inc()
        tenant = (raw.headers or {}).get(TENANT_HEADER)
        try:
            message = message_type.model_validate_json(raw.data)
        except ValueError as exc:  # pydantic's ValidationError included
            await dead_letter(raw, "invalid_message", str(exc), tenant)
            await raw.term()
            metrics.CONSUMED.labels(consumer=spec.durable, outcome="dead_letter").inc()
            return
        if message is None:
            await raw.ack()
            metrics.CONSUMED.labels(consumer=spec.durable, outcome="skipped").inc()
            return
        started = time.perf_counter()
        ctx = context_from_headers(raw.headers)
        corr = correlation_id.set(message.correlation_id)
        attempt_token = _attempt.set(attempt)
        alive = asyncio.create_task(keep_alive(raw))
        try:
            with (
                tenant_scope(message.tenant_id),
                tracer_.start_as_current_span(
                    f"consume {message.type}",
                    context=ctx,
                    attributes={
                        "messaging.system": "nats",
                        "messaging.destination": raw.subject,
                        "messaging.consumer": spec.durable,
                        "taskpilot.tenant_id": message.tenant_id,
                        "taskpilot.attempt": attempt,
                    },
                ),
            ):
                await handler(message)
        except PermanentError as exc:
            await dead_letter(raw, exc.reason, f"{type(exc).__name__}: {exc}", message.tenant_id)
            await raw.term()
            metrics.CONSUMED.labels(consumer=spec.durable, outcome="dead_letter").inc()
        except Exception as exc:
            delay = exc.delay if isinstance(exc, RetryLater) else policy.delay(attempt)
            if attempt >= policy.max_deliver:
                await dead_letter(
                    raw, "max_deliveries", f"{type(exc).__name__}: {exc}", message.tenant_id
                )
                await raw.term()
                metrics.CONSUMED.labels(consumer=spec.durable, outcome="dead_letter").inc()
            else:
                log.warning(
                    "%s attempt %d failed, retrying in %.1fs: %r",
                    spec.durable,
                    attempt,
                    delay,
                    exc,
                )
                await raw.nak(delay=delay)
                metrics.CONSUMED.labels(consumer=spec.durable, outcome="retry").inc()
        else:
            await raw.ack()
            metrics.CONSUMED.labels(consumer=spec.durable, outcome="ack").inc()
        finally:
            alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await alive
            correlation_id.reset(corr)
            _attempt.reset(attempt_token)
            metrics.HANDLE_SECONDS.labels(consumer=spec.durable).observe(
                time.perf_counter() - started
            )

    consume.__name__ = f"consume_{spec.durable}"
    ordered = policy.ordered
    bus.broker.subscriber(
        spec.filter_subject,
        stream=JStream(spec.stream.name, declare=False),
        durable=spec.durable,
        pull_sub=PullSub(batch_size=1, timeout=5.0),
        config=ConsumerConfig(
            ack_wait=policy.ack_wait_s,
            max_deliver=policy.max_deliver,
            max_ack_pending=1 if ordered else policy.max_ack_pending,
        ),
        ack_policy=AckPolicy.MANUAL,
        max_workers=1 if ordered else policy.workers,
        decoder=raw_body,
        title=spec.durable,
        description=f"{message_type.TYPE} from {spec.stream.name}",
    )(consume)


async def raw_body(msg: NatsMessage) -> bytes:
    # Validation happens in `consume` against the contract, so skip FastStream's JSON decode.
    return msg.body
