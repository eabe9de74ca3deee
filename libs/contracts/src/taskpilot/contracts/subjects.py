"""Every stream and subject of TaskPilot, declared once.

Subjects name the owner, the tenant and the fact: ``<context>.<tenant>.<fact>``. Services
build subjects only through :class:`Channel` objects from this module, never from literals.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

INBOUND_PARTITIONS = 8
"""Inbound WhatsApp traffic is split by (tenant, lead) into this many ordered partitions.

Changing it remaps leads to partitions: drain the WHATSAPP_IN stream first.
"""


@dataclass(frozen=True)
class Partitioning:
    """A stream subject transform that adds a deterministic partition token."""

    source: str
    destination: str
    count: int
    stored_prefix: str

    def filter(self, partition: int | str, kind: str = ">") -> str:
        """Stored subjects of one partition (``*`` for all), optionally of one kind."""
        return (
            f"{self.stored_prefix}.{partition}.>"
            if kind == ">"
            else (f"{self.stored_prefix}.{partition}.*.*.{kind}")
        )


@dataclass(frozen=True)
class Stream:
    name: str
    subjects: tuple[str, ...]
    description: str
    duplicate_window_s: float = 120.0
    max_age_s: float = 0.0  # 0 = keep until limits
    partitioning: Partitioning | None = None
    work_queue: bool = False
    """Work-queue retention: a message is removed once acknowledged, and taken by one consumer
    only. Fixed when the stream is created (NATS cannot change a stream's retention)."""


@dataclass(frozen=True)
class Channel:
    """One family of subjects, e.g. ``wa.out.{tenant}.send``.

    ``stream`` is None for core request-reply subjects (never stored).
    """

    pattern: str
    stream: Stream | None
    description: str = ""
    placeholders: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(n for _, n, _, _ in string.Formatter().parse(self.pattern) if n)
        object.__setattr__(self, "placeholders", names)

    def subject(self, **parts: str) -> str:
        missing = set(self.placeholders) - parts.keys()
        if missing:
            raise ValueError(f"{self.pattern}: missing {sorted(missing)}")
        for name, value in parts.items():
            if not value or any(c in value for c in ".*> \t\r\n"):
                raise ValueError(f"{self.pattern}: {name}={value!r} is not a subject token")
        return self.pattern.format(**parts)

    def wildcard(self, **parts: str) -> str:
        """The subject with every placeholder not given replaced by ``*``."""
        return self.pattern.format(**{n: parts.get(n, "*") for n in self.placeholders})


WHATSAPP_IN = Stream(
    "WHATSAPP_IN",
    ("wa.in.>",),
    "Inbound WhatsApp messages and statuses, one per update, partitioned by (tenant, lead)",
    partitioning=Partitioning(
        source="wa.in.*.*.*",
        destination=(
            f"wa.inp.{{{{partition({INBOUND_PARTITIONS},1,2)}}}}"
            ".{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}"
        ),
        count=INBOUND_PARTITIONS,
        stored_prefix="wa.inp",
    ),
)
WHATSAPP_OUT = Stream("WHATSAPP_OUT", ("wa.out.>",), "Send commands and their outcomes")
CONVERSATION = Stream(
    "CONVERSATION", ("conversation.>",), "Domain events of conversations, relayed after commit"
)
INFERENCE = Stream("INFERENCE", ("inference.>",), "Reply generation commands and results")
KNOWLEDGE = Stream("KNOWLEDGE", ("knowledge.>",), "Knowledge base changes (versions)")
TOOLS = Stream("TOOLS", ("tools.>",), "Tool call commands and results")
TOOL_JOBS = Stream(
    "TOOL_JOBS",
    ("jobs.>",),
    "Slow jobs of tools (work queue: each job is taken by one worker, removed when done)",
    work_queue=True,
)
DEAD_LETTERS = Stream(
    "DEAD_LETTERS", ("dlq.>",), "Messages that could not be processed, with their cause"
)

ALL_STREAMS: tuple[Stream, ...] = (
    WHATSAPP_IN,
    WHATSAPP_OUT,
    CONVERSATION,
    INFERENCE,
    KNOWLEDGE,
    TOOLS,
    TOOL_JOBS,
    DEAD_LETTERS,
)
"""Every stream of the services: provisioned at start-up by every service, listed by the
dead-letter tooling and the docs."""

# -- inbound edge (owner: ingest) -------------------------------------------------------
WA_MESSAGE_RECEIVED = Channel("wa.in.{tenant}.{lead}.message", WHATSAPP_IN)
WA_STATUS_RECEIVED = Channel("wa.in.{tenant}.{lead}.status", WHATSAPP_IN)
WA_MEDIA_STORED = Channel(
    "wa.in.{tenant}.{lead}.media_stored",
    WHATSAPP_IN,
    "an inbound message's media, downloaded and kept in object storage",
)
# -- outbound edge (commands to ingest's sender, outcomes from it) -----------------------
WA_SEND = Channel("wa.out.{tenant}.send", WHATSAPP_OUT)
WA_MARK_READ = Channel("wa.out.{tenant}.mark_read", WHATSAPP_OUT)
WA_SENT = Channel("wa.out.{tenant}.sent", WHATSAPP_OUT)
WA_SEND_FAILED = Channel("wa.out.{tenant}.failed", WHATSAPP_OUT)
# -- conversation domain events (owner: conversation) ------------------------------------
CONVERSATION_EVENT = Channel("conversation.{tenant}.{lead}.{event}", CONVERSATION)
# -- inference ---------------------------------------------------------------------------
GENERATE_REPLY = Channel("inference.{tenant}.generate_reply", INFERENCE)
REPLY_GENERATED = Channel("inference.{tenant}.reply_generated", INFERENCE)
# -- knowledge ---------------------------------------------------------------------------
KNOWLEDGE_UPDATED = Channel("knowledge.{tenant}.updated", KNOWLEDGE)
KNOWLEDGE_SEARCH = Channel("rpc.knowledge.{tenant}.search", None, "request-reply")
# -- tools -------------------------------------------------------------------------------
TOOL_EXECUTE = Channel("tools.{tenant}.execute", TOOLS)
TOOL_COMPLETED = Channel("tools.{tenant}.completed", TOOLS)
TOOL_SLOT_BOOKED = Channel("tools.{tenant}.slot_booked", TOOLS)
TOOL_BOOKING_CANCELLED = Channel("tools.{tenant}.booking_cancelled", TOOLS)
TOOL_PAYMENT_RECEIVED = Channel("tools.{tenant}.payment_received", TOOLS)
TOOL_WEBHOOK_DELIVERY = Channel("tools.{tenant}.webhook_delivery", TOOLS, "outgoing webhook")
TOOL_JOB_PROGRESSED = Channel("tools.{tenant}.job_progressed", TOOLS)
TOOL_JOB_COMPLETED = Channel("tools.{tenant}.job_completed", TOOLS)
TOOL_JOB_RUN = Channel("jobs.{tenant}.{kind}", TOOL_JOBS, "work-queue job commands")
# -- dead letters ------------------------------------------------------------------------
DEAD_LETTER = Channel("dlq.{tenant}.{origin}", DEAD_LETTERS)
