"""Dead letters: the safety net for consumers outside our policy, and their review.

* **Advisory mover.** JetStream announces a message that hit ``max_deliver`` (MAX_DELIVERIES)
  or was terminated (MSG_TERMINATED), fire-and-forget. The ``DLQ_ADVISORIES`` stream keeps
  those announcements and a durable consumer, ``dead-letter-mover``, copies the original
  message (still in its stream, ``get_msg``) into ``DEAD_LETTERS``, so a mover that was down
  still sees them. Terminations our own policy made (``+TERM taskpilot:dead-lettered``) already
  have their record and are skipped; the record id ``dlq:{stream}:{seq}`` is shared with the
  policy, so JetStream drops a second copy.
* **Review.** :class:`DeadLetterAdmin` lists, shows, replays and discards the ``DEAD_LETTERS``
  records the dashboard projects. Replay republishes the original body and headers to the
  original subject with a new ``Nats-Msg-Id``; discard deletes the record. Both are recorded
  as ``DeadLetterActioned`` in ``DLQ_ACTIONS`` (``dlqops.{tenant}.{action}``).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from nats.js.errors import NotFoundError
from pydantic import BaseModel

from taskpilot.contracts import Message, subjects
from taskpilot.contracts.dlq import UNKNOWN_TENANT, DeadLettered
from taskpilot.contracts.subjects import ALL_STREAMS, Channel, Stream
from taskpilot.runtime.bus import MSG_ID, Bus
from taskpilot.runtime.consumer import ConsumerPolicy, ConsumerSpec, dead_letter_id, subscribe
from taskpilot.runtime.pulling import TERM_REASON
from taskpilot.tenancy.context import TENANT_HEADER

log = logging.getLogger(__name__)

_WEEK = 7 * 24 * 3600.0
ADVISORIES = Stream(
    "DLQ_ADVISORIES",
    (
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>",
        "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>",
    ),
    "JetStream's max-deliveries and termination advisories, kept for the dead-letter mover",
    max_age_s=_WEEK,
)
DLQ_ACTIONS = Stream(
    "DLQ_ACTIONS", ("dlqops.>",), "Replays and discards of dead letters: who, what, when"
)
DEAD_LETTER_ACTION = Channel("dlqops.{tenant}.{action}", DLQ_ACTIONS)
RUNTIME_STREAMS: tuple[Stream, ...] = (ADVISORIES, DLQ_ACTIONS)
"""Streams of the runtime itself (not of any bounded context); provisioned by bootstrap."""

SYSTEM_TENANT = "_system"
MOVER = ConsumerSpec(
    "dead-letter-mover",
    ADVISORIES,
    "$JS.EVENT.ADVISORY.CONSUMER.>",
    ConsumerPolicy(max_deliver=10, workers=4, lookahead=1024),
)


class ConsumerAdvisory(Message):
    """A JetStream consumer advisory, in envelope form for the consumer policy."""

    kind: Literal["max_deliveries", "terminated"]
    stream: str
    consumer: str
    stream_seq: int
    deliveries: int
    reason: str | None = None


class _Advisory(BaseModel):
    type: str
    stream: str
    consumer: str
    stream_seq: int
    deliveries: int = 0
    reason: str | None = None


class AdvisoryParser:
    TYPE = "io.nats.jetstream.advisory.v1.max_deliver|terminated"

    def model_validate_json(self, data: bytes) -> ConsumerAdvisory | None:
        advisory = _Advisory.model_validate_json(data)
        kind = advisory.type.rsplit(".", 1)[-1]
        if kind not in ("max_deliver", "terminated"):
            return None
        return ConsumerAdvisory(
            tenant_id=SYSTEM_TENANT,
            correlation_id=f"{advisory.stream}:{advisory.stream_seq}",
            kind="max_deliveries" if kind == "max_deliver" else "terminated",
            stream=advisory.stream,
            consumer=advisory.consumer,
            stream_seq=advisory.stream_seq,
            deliveries=advisory.deliveries,
            reason=advisory.reason,
        )


class DeadLetterMover:
    def __init__(self, bus: Bus):
        self._bus = bus

    async def when_advised(self, advisory: ConsumerAdvisory) -> None:
        if advisory.reason == TERM_REASON or advisory.stream == ADVISORIES.name:
            return  # our policy wrote this one's record before terminating it
        try:
            original = await self._bus.js.get_msg(advisory.stream, advisory.stream_seq)
            body, headers = original.data or b"", dict(original.headers or {})
            subject: str | None = original.subject
            missing = ""
        except NotFoundError:
            body, headers, subject = b"", {}, None
            missing = " (the original is no longer in its stream)"
        try:
            payload, encoding = body.decode(), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(body).decode(), "base64"
        cause = (
            f"JetStream gave up after {advisory.deliveries} deliveries"
            if advisory.kind == "max_deliveries"
            else f"terminated by the consumer: {advisory.reason or 'no reason given'}"
        )
        letter = DeadLettered(
            tenant_id=headers.get(TENANT_HEADER) or UNKNOWN_TENANT,
            correlation_id=headers.get("Correlation-Id", advisory.correlation_id),
            origin=advisory.consumer,
            reason=advisory.kind,
            error=cause + missing,
            original_subject=subject,
            stream=advisory.stream,
            stream_seq=advisory.stream_seq,
            attempts=advisory.deliveries,
            headers=headers,
            payload=payload,
            payload_encoding=encoding,
        )
        await self._bus.publish(letter, msg_id=dead_letter_id(advisory.stream, advisory.stream_seq))
        log.warning("advisory mover dead-lettered %s", advisory.correlation_id)


def register_dead_letter_mover(bus: Bus) -> None:
    """Every service runs a share of the one durable mover (idempotent by record id)."""
    subscribe(bus, MOVER, AdvisoryParser(), DeadLetterMover(bus).when_advised)


# -- review: list, show, replay, discard ------------------------------------------------------


class DeadLetterActioned(Message):
    """A dead letter was replayed or discarded by an operator."""

    CHANNEL: ClassVar = DEAD_LETTER_ACTION

    action: Literal["replayed", "discarded"]
    letter_seq: int
    letter_event_id: str
    origin: str
    reason: str
    operator: str
    note: str = ""
    republished_subject: str | None = None
    republished_seq: int | None = None
    republished_msg_id: str | None = None
    letter: dict[str, Any] | None = None
    """The whole record, kept when it is discarded."""

    def subject_parts(self) -> dict[str, str]:
        return {"action": self.action}


@dataclass(frozen=True)
class LetterRecord:
    seq: int
    letter: DeadLettered
    actions: tuple[DeadLetterActioned, ...] = ()

    @property
    def status(self) -> str:
        return "replayed" if any(a.action == "replayed" for a in self.actions) else "open"


class LetterNotFoundError(LookupError):
    pass


class NotReplayableError(ValueError):
    pass


def publish_subject(stored_subject: str) -> str:
    """The subject to publish on for a message stored under ``stored_subject``: a stream's
    partition transform is undone (``wa.inp.3.t.l.message`` -> ``wa.in.t.l.message``)."""
    for stream in ALL_STREAMS:
        part = stream.partitioning
        if part is None or not stored_subject.startswith(part.stored_prefix + "."):
            continue
        source_prefix = part.source.split(".*", 1)[0]
        rest = stored_subject[len(part.stored_prefix) + 1 :].split(".", 1)[1]
        return f"{source_prefix}.{rest}"
    return stored_subject


def stream_of(subject: str) -> Stream | None:
    for stream in ALL_STREAMS:
        for pattern in stream.subjects:
            if _matches(pattern, subject):
                return stream
    return None


def _matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, part in enumerate(p):
        if part == ">":
            return len(s) > i
        if i >= len(s) or (part != "*" and part != s[i]):
            return False
    return len(p) == len(s)


class DeadLetterAdmin:
    """The operations behind ``taskpilot dlq`` (and what a dashboard API would call)."""

    def __init__(self, bus: Bus, operator: str):
        self._bus = bus
        self._operator = operator

    async def _scan(self, stream: str, subject: str) -> AsyncIterator[tuple[int, bytes]]:
        seq = 1
        while True:
            try:
                raw = await self._bus.js.get_msg(stream, seq, subject=subject, next=True)
            except NotFoundError:
                return
            assert raw.seq is not None
            yield raw.seq, raw.data or b""
            seq = raw.seq + 1

    async def actions(self, tenant: str | None = None) -> dict[int, list[DeadLetterActioned]]:
        found: dict[int, list[DeadLetterActioned]] = {}
        subject = DEAD_LETTER_ACTION.wildcard(**({"tenant": tenant} if tenant else {}))
        async for _, data in self._scan(DLQ_ACTIONS.name, subject):
            action = DeadLetterActioned.model_validate_json(data)
            found.setdefault(action.letter_seq, []).append(action)
        return found

    async def list(
        self,
        tenant: str | None = None,
        origin: str | None = None,
        reason: str | None = None,
        limit: int = 100,
    ) -> list[LetterRecord]:
        actions = await self.actions(tenant)
        subject = subjects.DEAD_LETTER.wildcard(**({"tenant": tenant} if tenant else {}))
        records = []
        async for seq, data in self._scan(subjects.DEAD_LETTERS.name, subject):
            letter = DeadLettered.model_validate_json(data)
            if (origin and letter.origin != origin) or (reason and letter.reason != reason):
                continue
            records.append(LetterRecord(seq, letter, tuple(actions.get(seq, ()))))
        return records[-limit:] if limit else records

    async def show(self, letter: str | int) -> LetterRecord:
        """A record by its ``DEAD_LETTERS`` sequence or its ``event_id`` (the dashboard's id)."""
        seq = await self._sequence_of(str(letter))
        try:
            raw = await self._bus.js.get_msg(subjects.DEAD_LETTERS.name, seq)
        except NotFoundError as exc:
            raise LetterNotFoundError(f"no dead letter {letter}") from exc
        found = DeadLettered.model_validate_json(raw.data or b"")
        actions = await self.actions(found.tenant_id)
        return LetterRecord(seq, found, tuple(actions.get(seq, ())))

    async def _sequence_of(self, letter: str) -> int:
        if letter.isdigit():
            return int(letter)
        async for seq, data in self._scan(
            subjects.DEAD_LETTERS.name, subjects.DEAD_LETTERS.subjects[0]
        ):
            if DeadLettered.model_validate_json(data).event_id.hex == letter.replace("-", ""):
                return seq
        raise LetterNotFoundError(f"no dead letter {letter}")

    async def replay(self, letter_id: str | int, note: str = "") -> DeadLetterActioned:
        record = await self.show(letter_id)
        seq = record.seq
        letter = record.letter
        if not letter.original_subject:
            raise NotReplayableError(
                f"dead letter {seq} ({letter.origin}) has no original subject: it never reached "
                "a stream (e.g. a malformed webhook); fix the sender and let it retry"
            )
        subject = publish_subject(letter.original_subject)
        stream = stream_of(subject)
        if stream is None:
            raise NotReplayableError(f"no stream stores {subject}")
        body = (
            base64.b64decode(letter.payload)
            if letter.payload_encoding == "base64"
            else letter.payload.encode()
        )
        # The dashboard's scheme: a new Msg-Id per replay, so the duplicate window never drops it.
        replays = sum(a.action == "replayed" for a in record.actions)
        msg_id = f"replay:{letter.event_id}:{replays + 1}"
        headers = {k: v for k, v in letter.headers.items() if not k.startswith("Nats-")}
        headers |= {MSG_ID: msg_id, "Replay-Of": str(letter.event_id)}
        ack = await self._bus.publish_ack(subject, body, headers, stream.name)
        action = self._action(record, "replayed", note).model_copy(
            update={
                "republished_subject": subject,
                "republished_seq": ack.seq,
                "republished_msg_id": msg_id,
            }
        )
        await self._bus.publish(action, msg_id=f"dlqop:replayed:{msg_id}")
        return action

    async def discard(self, letter_id: str | int, note: str = "") -> DeadLetterActioned:
        record = await self.show(letter_id)
        seq = record.seq
        action = self._action(record, "discarded", note).model_copy(
            update={"letter": json.loads(record.letter.model_dump_json())}
        )
        # Recorded first: a crash in between leaves a recorded discard to repeat, never a
        # record gone without a trace.
        await self._bus.publish(action, msg_id=f"dlqop:discarded:{seq}")
        await self._bus.js.delete_msg(subjects.DEAD_LETTERS.name, seq)
        return action

    def _action(self, record: LetterRecord, action: str, note: str) -> DeadLetterActioned:
        letter = record.letter
        return DeadLetterActioned(
            tenant_id=letter.tenant_id,
            correlation_id=letter.correlation_id,
            causation_id=str(letter.event_id),
            action=action,
            letter_seq=record.seq,
            letter_event_id=str(letter.event_id),
            origin=letter.origin,
            reason=letter.reason,
            operator=self._operator,
            note=note,
        )
