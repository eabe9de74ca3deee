"""The JetStream pull engine under every subscription: fetch ahead, schedule fairly, drain.

One :class:`PullConsumer` per durable consumer and process. It keeps up to ``lookahead``
deliveries of its consumer in memory (one pull request at a time, sized by the free room, held
open by the server until filled or expired, watched by idle heartbeats), files them in a
:class:`~taskpilot.runtime.fairness.FairQueue` by tenant (and by key when ordered), and runs
``workers`` tasks that take deliveries round-robin over tenants. Deliveries it holds are kept
alive with ``in_progress`` so ``ack_wait`` only fires when the process is gone.

An ordered consumer is processed by one process at a time (a :class:`~taskpilot.runtime.lease.
Lease`): that process keeps per-key order while running different keys concurrently, and a
failed delivery is retried locally, holding its key, so nothing of the same key overtakes it.

:meth:`PullConsumer.stop` is the graceful path: stop pulling, hand the deliveries not yet
started back to the server (``nak``, redelivered at once to another process), let the running
ones finish and ack within the drain timeout, then release the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from taskpilot.runtime import metrics
from taskpilot.runtime.fairness import FairQueue
from taskpilot.runtime.lease import Lease
from taskpilot.tenancy.context import TENANT_HEADER

log = logging.getLogger(__name__)

UNKNOWN_TENANT = "_unknown"
TERM_REASON = "taskpilot:dead-lettered"
"""Sent with ``+TERM``: the dead-letter mover skips terminations we already recorded."""


@dataclass
class Delivery:
    msg: Msg
    tenant: str
    key: str
    stream_seq: int
    arrived: float = field(default_factory=time.monotonic)
    local_retries: int = 0

    @property
    def attempt(self) -> int:
        return self.msg.metadata.num_delivered + self.local_retries


@dataclass(frozen=True)
class Outcome:
    """What the engine does with a handled delivery: ack, term (already dead-lettered), or
    retry after ``delay`` seconds."""

    action: str
    delay: float = 0.0


ACK = Outcome("ack")
TERM = Outcome("term")


def retry(delay: float) -> Outcome:
    return Outcome("retry", delay)


Process = Callable[[Delivery], Awaitable[Outcome]]


@dataclass(frozen=True)
class PullSettings:
    stream: str
    durable: str
    filter_subject: str
    ack_wait_s: float
    max_deliver: int
    workers: int
    lookahead: int
    tenant_cap: int
    ordered: bool
    expires_s: float = 5.0
    heartbeat_s: float = 1.0
    lag_every_s: float = 10.0


def order_key(subject: str) -> str:
    """Deliveries of one key stay in order: the subject without its last token (the fact),
    e.g. ``wa.inp.3.{tenant}.{lead}`` or ``conversation.{tenant}.{lead}``."""
    return subject.rsplit(".", 1)[0]


class _Request:
    def __init__(self, inbox: str, batch: int):
        self.inbox = inbox
        self.batch = batch
        self.received = 0
        self.touched = time.monotonic()
        self.finished = asyncio.Event()


class PullConsumer:
    def __init__(
        self,
        nc: Callable[[], NatsClient],
        js: Callable[[], JetStreamContext],
        settings: PullSettings,
        process: Process,
        lease: Lease | None = None,
    ):
        self._nc, self._js = nc, js
        self.settings = settings
        self._process = process
        self._lease = lease
        self._queue: FairQueue[Delivery] = FairQueue(settings.tenant_cap, settings.ordered)
        self._owned: dict[int, Delivery] = {}  # stream seq -> every delivery we hold
        self._held: dict[int, asyncio.TimerHandle] = {}  # ordered local retries waiting
        self._work = asyncio.Event()
        self._room = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._sub: Subscription | None = None
        self._request: _Request | None = None
        self._inbox_prefix = ""
        self._ids = itertools.count(1)
        self._pulling = False
        self._reprovision = False
        self._recovering = 0  # deliveries a previous owner left unacknowledged, to sort
        self._recovered: list[Delivery] = []
        self.started = False

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.provision()
        self._inbox_prefix = self._nc().new_inbox()
        self._sub = await self._nc().subscribe(f"{self._inbox_prefix}.*", cb=self._on_message)
        self._pulling = True
        self._workers = [
            asyncio.create_task(self._worker(), name=f"{self.settings.durable}-w{n}")
            for n in range(self.settings.workers)
        ]
        self._tasks = [
            asyncio.create_task(self._pull_loop(), name=f"{self.settings.durable}-pull"),
            asyncio.create_task(self._keep_alive(), name=f"{self.settings.durable}-alive"),
            asyncio.create_task(self._watch_lag(), name=f"{self.settings.durable}-lag"),
        ]
        self.started = True

    async def provision(self) -> None:
        s = self.settings
        # Named (not the legacy durable API): the filter is then part of the API subject, so
        # NATS permissions can bound what a consumer may read (taskpilot.runtime.permissions).
        config = ConsumerConfig(
            name=s.durable,
            durable_name=s.durable,
            filter_subject=s.filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=s.ack_wait_s,
            max_deliver=s.max_deliver,
            max_ack_pending=s.lookahead,
            max_waiting=512,
        )
        await self._js().add_consumer(s.stream, config)

    async def stop(self, drain_timeout: float) -> None:
        """Graceful: stop pulling, give back what was not started, let the rest finish."""
        if not self.started:
            return
        self.started = False
        self._pulling = False
        request = self._request
        if self.settings.ordered and request is not None and not request.finished.is_set():
            # Deliveries handed back while our pull request is still open on the server are
            # sent to it again, found without interest and queued behind everything else:
            # that would reorder a key. Let it end (at most its expiry) before handing back.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(request.finished.wait(), self.settings.expires_s + 1.0)
        await _cancelled(self._tasks, self.settings.durable)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        await self._give_back(self._queue.drain() + self._take_held())
        if self._queue.in_flight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), drain_timeout)
        # A handler still running past the drain timeout is cancelled (its delivery naked).
        await _cancelled(self._workers, self.settings.durable)
        await self._give_back(list(self._owned.values()))
        with contextlib.suppress(Exception):
            await self._nc().flush(timeout=5)
        if self._lease is not None:
            await self._lease.release()

    def _take_held(self) -> list[Delivery]:
        """Deliveries not running: waiting for a local retry, or collected at a takeover."""
        held, self._recovered, self._recovering = self._recovered, [], 0
        for seq, handle in list(self._held.items()):
            handle.cancel()
            held.append(self._owned[seq])
        self._held.clear()
        return held

    async def _give_back(self, deliveries: list[Delivery]) -> None:
        for delivery in sorted(deliveries, key=lambda d: d.stream_seq):
            with contextlib.suppress(Exception):
                await delivery.msg.nak()
            self._owned.pop(delivery.stream_seq, None)

    # -- pulling ----------------------------------------------------------------------------

    def _room_for(self) -> int:
        return self.settings.lookahead - len(self._owned)

    async def _pull_loop(self) -> None:
        s = self.settings
        refill = max(1, min(s.lookahead // 4, 256))
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{s.stream}.{s.durable}"
        while self._pulling:
            if self._lease is not None and not self._lease.held:
                await self._give_back(self._queue.drain() + self._take_held())
                await self._lease.acquire()
                await self._start_recovery()
                continue
            room = self._room_for()
            if room < refill and self._owned:
                self._room.clear()
                await self._room.wait()
                continue
            if self._reprovision:
                await self._try_provision()
            request = _Request(f"{self._inbox_prefix}.{next(self._ids)}", room)
            self._request = request
            body = {
                "batch": room,
                "expires": int(s.expires_s * 1e9),
                "idle_heartbeat": int(s.heartbeat_s * 1e9),
            }
            try:
                await self._nc().publish(subject, json.dumps(body).encode(), reply=request.inbox)
            except Exception as exc:  # disconnected: nats-py buffers, or raises when closed
                log.warning("%s: pull request failed: %r", s.durable, exc)
                await asyncio.sleep(1.0)
                continue
            await self._watch(request)
            self._end_recovery()

    async def _watch(self, request: _Request) -> None:
        """Until the request is filled, expired, or silent for 3 heartbeats (server gone)."""
        silent_after = 3 * self.settings.heartbeat_s
        while not request.finished.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(request.finished.wait(), self.settings.heartbeat_s)
            if self._lease is not None and not self._lease.held:
                return
            if time.monotonic() - request.touched > silent_after:
                log.info("%s: pull request went silent, renewing it", self.settings.durable)
                self._reprovision = True
                return

    async def _try_provision(self) -> None:
        try:
            await self.provision()
            self._reprovision = False
        except Exception as exc:
            log.warning("%s: consumer not provisioned yet: %r", self.settings.durable, exc)
            await asyncio.sleep(1.0)

    async def _on_message(self, msg: Msg) -> None:
        status = (msg.headers or {}).get("Status") if not msg.data else None
        request = self._request
        if status is not None:
            if request is not None and msg.subject == request.inbox:
                request.touched = time.monotonic()
                if status != "100":  # 408 expired, 404 none, 409 leadership/deleted/limits
                    if status == "409":
                        log.info("%s: pull ended: %s", self.settings.durable, msg.headers)
                        self._reprovision = "delet" in str(msg.headers).lower()
                    request.finished.set()
            return
        if request is not None:
            request.touched = time.monotonic()
            request.received += 1
            if request.received >= request.batch:
                request.finished.set()
        self._accept(msg)

    async def _start_recovery(self) -> None:
        """A new owner of an ordered consumer first takes back what the previous one held.

        JetStream redelivers those before newer messages, but in the order their ``ack_wait``
        ran out (or they were handed back), not in stream order; they are collected and
        queued in stream order, so a key's order survives the takeover."""
        try:
            info = await self._js().consumer_info(self.settings.stream, self.settings.durable)
        except Exception as exc:
            log.warning("%s: no consumer info at takeover: %r", self.settings.durable, exc)
            return
        self._recovering = info.num_ack_pending or 0
        if self._recovering:
            log.info("%s: taking over %d deliveries", self.settings.durable, self._recovering)

    def _end_recovery(self) -> None:
        if not self._recovering and not self._recovered:
            return
        self._recovering = 0
        recovered, self._recovered = self._recovered, []
        for delivery in sorted(recovered, key=lambda d: d.stream_seq):
            self._queue.put(delivery.tenant, delivery.key, delivery)
        self._work.set()

    def _accept(self, msg: Msg) -> None:
        try:
            seq = msg.metadata.sequence.stream
        except Exception:
            log.warning("%s: delivery without JetStream metadata ignored", self.settings.durable)
            return
        if seq in self._owned:
            return  # a redelivery of something we still hold
        tenant = (msg.headers or {}).get(TENANT_HEADER) or UNKNOWN_TENANT
        key = order_key(msg.subject) if self.settings.ordered else ""
        delivery = Delivery(msg, tenant, key, seq)
        self._owned[seq] = delivery
        if self._recovering:
            self._recovered.append(delivery)
            if len(self._recovered) >= self._recovering:
                self._end_recovery()
            return
        self._queue.put(tenant, key, delivery)
        metrics.CONSUMER_BUFFERED.labels(consumer=self.settings.durable).set(len(self._queue))
        self._work.set()

    # -- working ----------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            taken = self._queue.take() if self.started else None  # stopping: no new work
            if taken is None:
                if not self.started:
                    # Stopping: nothing new is taken. Returning (rather than waiting to be
                    # cancelled) also ends a worker whose handler swallowed the cancellation.
                    return
                self._work.clear()
                await self._work.wait()
                continue
            self._idle.clear()
            delivery = taken.item
            metrics.CONSUMER_WAIT_SECONDS.labels(consumer=self.settings.durable).observe(
                time.monotonic() - delivery.arrived
            )
            hold = False
            try:
                outcome = await self._process(delivery)
                hold = await self._settle(delivery, outcome)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await delivery.msg.nak()
                self._owned.pop(delivery.stream_seq, None)
                raise
            except Exception:  # the process function handles errors; this is a bug guard
                log.exception("%s: delivery %s", self.settings.durable, delivery.stream_seq)
                with contextlib.suppress(Exception):
                    await delivery.msg.nak(delay=1.0)
                self._owned.pop(delivery.stream_seq, None)
            finally:
                self._queue.done(taken.tenant, taken.key, hold=hold)
                metrics.CONSUMER_BUFFERED.labels(consumer=self.settings.durable).set(
                    len(self._queue)
                )
                if not self._queue.in_flight:
                    self._idle.set()
                self._room.set()
                self._work.set()  # a freed tenant slot or key may make others eligible

    async def _settle(self, delivery: Delivery, outcome: Outcome) -> bool:
        """Ack, term or retry; True when the delivery's key stays held for a local retry."""
        msg = delivery.msg
        if outcome.action == "retry" and self.settings.ordered and self.started:
            delivery.local_retries += 1
            self._held[delivery.stream_seq] = asyncio.get_running_loop().call_later(
                outcome.delay, self._release, delivery
            )
            return True
        if outcome.action == "ack":
            await msg.ack()
        elif outcome.action == "term":
            await self._nc().publish(msg.reply, f"+TERM {TERM_REASON}".encode())
        else:
            await msg.nak(delay=outcome.delay)
        self._owned.pop(delivery.stream_seq, None)
        return False

    def _release(self, delivery: Delivery) -> None:
        self._held.pop(delivery.stream_seq, None)
        self._queue.release(delivery.tenant, delivery.key, delivery)
        self._work.set()

    async def _keep_alive(self) -> None:
        """Everything we hold stays ours: ``ack_wait`` is for processes that are gone."""
        period = max(0.5, self.settings.ack_wait_s / 3)
        while True:
            await asyncio.sleep(period)
            for delivery in list(self._owned.values()):
                with contextlib.suppress(Exception):
                    await delivery.msg.in_progress()

    async def _watch_lag(self) -> None:
        while True:
            await self.report_lag()
            await asyncio.sleep(self.settings.lag_every_s)

    async def report_lag(self) -> int | None:
        """Set the consumer's lag gauge from its consumer info (one JetStream API call);
        None, and the gauge left as it was, when the server cannot answer right now."""
        s = self.settings
        try:
            info = await self._js().consumer_info(s.stream, s.durable)
        except Exception as exc:  # disconnected, or a leader election: the next round retries
            log.debug("%s: no consumer info for the lag gauge: %r", s.durable, exc)
            return None
        lag = (info.num_pending or 0) + (info.num_ack_pending or 0)
        metrics.CONSUMER_LAG.labels(consumer=s.durable).set(lag)
        return lag

    # -- introspection ----------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return self._queue.in_flight


async def _cancelled(tasks: list[asyncio.Task[None]], durable: str, timeout: float = 5.0) -> None:
    """Cancel and wait, bounded: a task that swallowed its cancellation is named and left,
    never awaited forever (a stop that hangs blocks the whole process's shutdown)."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        log.error("%s: task %s did not end when cancelled", durable, task.get_name())
