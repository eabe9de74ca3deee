"""The uniform consumer policy: durable pull consumers, explicit ack, backoff, dead letters.

Every subscription of every service goes through :func:`subscribe`. A handler receives a typed
contract and either returns (ack), raises :class:`PermanentError` or fails validation (dead
letter at once: retrying cannot help), or raises anything else (retry after the backoff
schedule; after ``max_deliver`` attempts, a dead letter with the cause).

Deliveries are fetched ahead and handed to the handlers fairly across tenants, by the engine in
:mod:`taskpilot.runtime.pulling` (see docs/adr/0007): one tenant's backlog holds at most
``max_in_flight_per_tenant`` workers, and an ordered consumer keeps per-key order (one lead's
messages one after another) while other keys run concurrently.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from faststream.nats import NatsMessage
from nats.aio.msg import Msg
from pydantic import BaseModel, ValidationError

from taskpilot.contracts import Message
from taskpilot.contracts.dlq import UNKNOWN_TENANT, DeadLettered
from taskpilot.contracts.subjects import Stream
from taskpilot.runtime import metrics
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.pulling import ACK, TERM, Delivery, Outcome, retry
from taskpilot.runtime.telemetry import (
    context_from_headers,
    correlation_id,
    current_trace_id,
    tracer,
)
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
    lookahead: int = 16_384
    """Deliveries fetched ahead of the handlers (the consumer's ``max_ack_pending``): a tenant
    behind another's backlog is reached as long as the backlog fits in it."""
    workers: int = 8
    max_in_flight_per_tenant: int | None = None
    """Workers one tenant may hold at once (default: half of ``workers``, at least 1)."""
    ordered: bool = False
    """Per-key order (key: the subject without its last token, e.g. tenant + lead): one
    delivery per key in flight, failed ones retried in place; one process at a time."""

    def delay(self, attempt: int) -> float:
        return self.backoff_s[min(attempt - 1, len(self.backoff_s) - 1)]

    @property
    def tenant_cap(self) -> int:
        return self.max_in_flight_per_tenant or max(1, self.workers // 2)


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


Process = Callable[[Delivery], Awaitable[Outcome]]


def subscribe(
    bus: Bus, spec: ConsumerSpec, message_type: type[M] | Parser, handler: Handler[M]
) -> None:
    """Register ``handler`` for ``spec``'s durable consumer; it runs from ``bus.start()``."""
    bus.add_consumer(spec, handling(bus, spec, message_type, handler))


def handling(
    bus: Bus, spec: ConsumerSpec, message_type: type[M] | Parser, handler: Handler[M]
) -> Process:
    """The policy for one delivery: validate, scope, call the handler, decide the outcome."""
    policy = spec.policy
    tracer_ = tracer(bus.name)

    async def dead_letter(
        raw: Msg, attempts: int, reason: str, error: str, tenant: str | None, trace: str | None
    ) -> None:
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
            attempts=attempts,
            headers=dict(raw.headers or {}),
            payload=payload,
            payload_encoding=encoding,
            trace_id=trace,
        )
        await bus.publish(letter, msg_id=dead_letter_id(md.stream, md.sequence.stream))
        metrics.DEAD_LETTERS.labels(origin=spec.durable, reason=reason).inc()
        log.error("dead-lettered %s seq %s: %s", md.stream, md.sequence.stream, error)

    async def process(delivery: Delivery) -> Outcome:
        raw = delivery.msg
        attempt = delivery.attempt
        if attempt > 1:
            metrics.REDELIVERED.labels(consumer=spec.durable).inc()
        tenant = (raw.headers or {}).get(TENANT_HEADER)
        try:
            message = message_type.model_validate_json(raw.data)
        except ValueError as exc:  # pydantic's ValidationError included
            await dead_letter(raw, attempt, "invalid_message", str(exc), tenant, None)
            metrics.CONSUMED.labels(consumer=spec.durable, outcome="dead_letter").inc()
            return TERM
        if message is None:
            metrics.CONSUMED.labels(consumer=spec.durable, outcome="skipped").inc()
            return ACK
        started = time.perf_counter()
        ctx = context_from_headers(raw.headers)
        corr = correlation_id.set(message.correlation_id)
        attempt_token = _attempt.set(attempt)
        trace: str | None = None
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
                trace = current_trace_id()
                await handler(message)
        except PermanentError as exc:
            error = f"{type(exc).__name__}: {exc}"
            await dead_letter(raw, attempt, exc.reason, error, message.tenant_id, trace)
            metrics.CONSUMED.labels(consumer=spec.durable, outcome="dead_letter").inc()
            return TERM
        except Exception as exc:
            if attempt >= policy.max_deliver:
                error = f"{type(exc).__name__}: {exc}"
                await dead_letter(raw, attempt, "max_deliveries", error, message.tenant_id, trace)
                metrics.CONSUMED.labels(consumer=spec.durable, outcome="dead_letter").inc()
                return TERM
            delay = exc.delay if isinstance(exc, RetryLater) else policy.delay(attempt)
            log.warning(
                "%s attempt %d failed, retrying in %.1fs: %r", spec.durable, attempt, delay, exc
            )
            metrics.CONSUMED.labels(consumer=spec.durable, outcome="retry").inc()
            return retry(delay)
        finally:
            correlation_id.reset(corr)
            _attempt.reset(attempt_token)
            metrics.HANDLE_SECONDS.labels(consumer=spec.durable).observe(
                time.perf_counter() - started
            )
        metrics.CONSUMED.labels(consumer=spec.durable, outcome="ack").inc()
        return ACK

    return process


def dead_letter_id(stream: str, seq: int) -> str:
    """One dead letter per stored message, whoever writes it (consumer or advisory mover)."""
    return f"dlq:{stream}:{seq}"


async def raw_body(msg: NatsMessage) -> bytes:
    """FastStream decoder for core subscribers that validate the body themselves."""
    return msg.body


Q = TypeVar("Q", bound=Message)


def responder(
    request_type: type[Q],
    error: Callable[[str], BaseModel],
    answer: Callable[[Q], Awaitable[BaseModel]],
    *,
    service: str,
    refusals: dict[type[Exception], Callable[[Exception], str]] | None = None,
) -> Callable[[bytes, NatsMessage], Awaitable[bytes]]:
    """A core request-reply handler (FastStream, ``decoder=raw_body``) that never raises.

    The request is validated and must name the tenant of its subject (``<kind>.<verb>.
    <tenant>...``); ``answer`` runs in that tenant's scope and in the caller's trace. A bad
    request, and any exception listed in ``refusals`` (mapped to its message), travel back as
    ``error(message)``: the caller reads the reason instead of waiting for a timeout.
    """
    known = refusals or {}
    tracer_ = tracer(service)

    async def respond(body: bytes, msg: NatsMessage) -> bytes:
        try:
            request = request_type.model_validate_json(msg.body)
        except ValidationError as exc:
            return error(f"invalid request: {exc.error_count()} errors").model_dump_json().encode()
        if msg.raw_message.subject.split(".")[2] != request.tenant_id:
            return error("tenant in subject and body differ").model_dump_json().encode()
        with (
            tenant_scope(request.tenant_id),
            tracer_.start_as_current_span(
                f"answer {request.type}",
                context=context_from_headers(msg.headers),
                attributes={"taskpilot.tenant_id": request.tenant_id},
            ),
        ):
            try:
                result = await answer(request)
            except tuple(known) as exc:
                reason = next(say for kind, say in known.items() if isinstance(exc, kind))
                result = error(reason(exc))
        return result.model_dump_json().encode()

    return respond
