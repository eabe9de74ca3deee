"""Who may publish and subscribe to what on the bus: one table, built from declared subjects.

Each service connects with its own NATS user. :data:`SERVICES` says, in terms of the streams
and channels of :mod:`taskpilot.contracts.subjects`, what each one does; :func:`service_permissions`
turns that into the subjects NATS checks (JetStream's API included), and
:func:`server_authorization` into the ``authorization`` block of a nats-server config.

* A service publishes only the channels it owns (plus dead letters, which any consumer
  writes), reads only the streams it consumes, and answers only the request-reply channels it
  serves. Its replies come to its own inbox prefix (``_INBOX.<user>``): nobody else can listen
  to them, so a pull consumer's deliveries and a search's answer stay with the requester.
* A service may create the declared streams (whoever starts first provisions them) but not
  change or delete them: a changed stream config is applied by the ``admin`` user
  (``taskpilot dev`` does at start; in a cluster ``taskpilot nats provision``).
* An internal team (:func:`team_permissions`) publishes only under ``team.<name>.>`` and reads
  only the public events (:data:`PUBLIC_CHANNELS`): the typed contracts are its API; commands,
  request-reply, dead letters and other teams' subjects are refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from taskpilot.contracts import subjects as s
from taskpilot.contracts.inference import (
    BUDGET_EXCEEDED,
    BUDGET_NEAR_CAP,
    INFERENCE_WHAT_IF,
    INFERENCE_WRITE_PLAN,
)
from taskpilot.contracts.knowledge import (
    KNOWLEDGE_MEMORY_ERASE,
    KNOWLEDGE_MEMORY_RECALL,
    KNOWLEDGE_MEMORY_REMEMBER,
)
from taskpilot.contracts.subjects import Channel, Stream
from taskpilot.runtime.dlq import ADVISORIES, RUNTIME_STREAMS
from taskpilot.runtime.lease import BUCKET as LEASE_BUCKET
from taskpilot.runtime.settings import inbox_prefix

ADMIN = "admin"
TEAM_ROOT = "team"

PUBLIC_CHANNELS: tuple[Channel, ...] = (
    s.CONVERSATION_EVENT,
    s.TOOL_COMPLETED,
    s.TOOL_SLOT_BOOKED,
    s.TOOL_BOOKING_CANCELLED,
    s.TOOL_PAYMENT_RECEIVED,
    s.TOOL_JOB_COMPLETED,
    s.KNOWLEDGE_UPDATED,
)
"""What internal teams may read: the facts of the typed contracts (the same events a tenant's
outgoing webhook may subscribe to, plus knowledge versions). Not commands (``wa.out.*.send``,
``inference.*.generate_reply``, ``tools.*.execute``, jobs), not the raw WhatsApp edge, not
request-reply (``rpc.>``), not dead letters: those are the services' internals."""

PROVISIONED: tuple[Stream, ...] = tuple(
    sorted({*s.ALL_STREAMS, *RUNTIME_STREAMS}, key=lambda stream: stream.name)
)
"""Streams every service may create at start-up (never update or delete)."""


@dataclass(frozen=True)
class Access:
    """What one service does on the bus, in declared streams and channels."""

    publishes: tuple[Channel, ...] = ()
    consumes: tuple[Stream, ...] = ()
    requests: tuple[Channel, ...] = ()
    serves: tuple[Channel, ...] = ()
    buckets: tuple[str, ...] = ()
    purges: tuple[Stream, ...] = ()
    deletes_consumers: bool = False
    deletes_messages: tuple[Stream, ...] = ()


RUNTIME = Access(
    publishes=(s.DEAD_LETTER,),  # the consumer policy dead-letters in every service
    consumes=(ADVISORIES,),  # the dead-letter mover runs in every service
    buckets=(LEASE_BUCKET,),  # leases of ordered consumers
)
"""What the shared runtime does in every service (:mod:`taskpilot.runtime.bootstrap`)."""

SERVICES: dict[str, Access] = {
    "ingest": Access(
        publishes=(
            s.WA_MESSAGE_RECEIVED,
            s.WA_STATUS_RECEIVED,
            s.WA_MEDIA_STORED,
            s.WA_SENT,
            s.WA_SEND_FAILED,
        ),
        consumes=(s.WHATSAPP_OUT, s.WHATSAPP_IN),
        buckets=("ingest_sends",),
    ),
    "conversation": Access(
        publishes=(
            s.CONVERSATION_EVENT,
            s.WA_SEND,
            s.WA_MARK_READ,
            s.GENERATE_REPLY,
            s.TOOL_EXECUTE,
        ),
        consumes=(s.WHATSAPP_IN, s.WHATSAPP_OUT, s.INFERENCE, s.TOOLS, s.CONVERSATION),
        requests=(KNOWLEDGE_MEMORY_REMEMBER, KNOWLEDGE_MEMORY_ERASE, INFERENCE_WHAT_IF),
        purges=(s.WHATSAPP_IN, s.CONVERSATION),  # GDPR erasure of one lead
    ),
    "inference": Access(
        publishes=(s.REPLY_GENERATED, BUDGET_NEAR_CAP, BUDGET_EXCEEDED),
        consumes=(s.INFERENCE, s.KNOWLEDGE),
        requests=(s.KNOWLEDGE_SEARCH,),
        # a past turn replayed with another configuration; the weekly plan of a tools job
        serves=(INFERENCE_WHAT_IF, INFERENCE_WRITE_PLAN),
        buckets=("inference_cache", "inference_spend"),
    ),
    "knowledge": Access(
        publishes=(s.KNOWLEDGE_UPDATED,),
        serves=(
            s.KNOWLEDGE_SEARCH,
            KNOWLEDGE_MEMORY_REMEMBER,
            KNOWLEDGE_MEMORY_RECALL,
            KNOWLEDGE_MEMORY_ERASE,
        ),
    ),
    "tools": Access(
        publishes=(
            s.TOOL_COMPLETED,
            s.TOOL_SLOT_BOOKED,
            s.TOOL_BOOKING_CANCELLED,
            s.TOOL_PAYMENT_RECEIVED,
            s.TOOL_WEBHOOK_DELIVERY,
            s.TOOL_JOB_PROGRESSED,
            s.TOOL_JOB_COMPLETED,
            s.TOOL_JOB_RUN,
        ),
        consumes=(s.TOOLS, s.CONVERSATION, s.TOOL_JOBS, s.DEAD_LETTERS),
        requests=(INFERENCE_WRITE_PLAN,),  # the weekly marketing plan, written by a model
    ),
    "analytics": Access(
        consumes=(s.CONVERSATION, s.TOOLS, s.DEAD_LETTERS),
        deletes_consumers=True,  # a projection rebuild removes its temporary consumers
    ),
}
"""Every service's use of the bus. A service's own settings may rename a KV bucket; the names
here are the defaults (checked against the services by tests/unit)."""


@dataclass(frozen=True)
class Permissions:
    user: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool = False

    @property
    def inbox_prefix(self) -> str:
        return inbox_prefix(self.user)

    def to_config(self, password: str) -> dict[str, Any]:
        perms: dict[str, Any] = {
            "publish": {"allow": list(self.publish)},
            "subscribe": {"allow": list(self.subscribe)},
        }
        if self.allow_responses:
            perms["allow_responses"] = True
        return {"user": self.user, "password": password, "permissions": perms}


def _stream_reader(stream: str) -> list[str]:
    api = "$JS.API.CONSUMER"
    return [
        f"{api}.CREATE.{stream}",
        f"{api}.CREATE.{stream}.>",
        f"{api}.DURABLE.CREATE.{stream}.*",
        f"{api}.INFO.{stream}.*",
        f"{api}.NAMES.{stream}",
        f"{api}.LIST.{stream}",
        f"{api}.MSG.NEXT.{stream}.*",
        f"$JS.ACK.{stream}.>",
        f"$JS.FC.{stream}.>",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
    ]


def _bucket(bucket: str) -> list[str]:
    stream = f"KV_{bucket}"
    return [
        f"$KV.{bucket}.>",
        f"$JS.API.STREAM.CREATE.{stream}",
        *_stream_reader(stream),
    ]


def service_permissions(name: str) -> Permissions:
    """The NATS permissions of service ``name`` (a key of :data:`SERVICES`)."""
    accesses = (RUNTIME, SERVICES[name])
    publish: list[str] = [
        "$JS.API.INFO",
        "$JS.API.STREAM.INFO.*",
        "$JS.API.STREAM.NAMES",  # nats-py looks up a subject's stream (js.subscribe)
        *(f"$JS.API.STREAM.CREATE.{stream.name}" for stream in PROVISIONED),
        # the dead-letter mover copies a message that hit max_deliver from whichever stream
        "$JS.API.STREAM.MSG.GET.*",
    ]
    subscribe: list[str] = [f"{inbox_prefix(name)}.>"]
    for access in accesses:
        publish += [c.wildcard() for c in access.publishes + access.requests]
        for stream in access.consumes:
            publish += _stream_reader(stream.name)
            if access.deletes_consumers:
                publish.append(f"$JS.API.CONSUMER.DELETE.{stream.name}.*")
        for bucket in access.buckets:
            publish += _bucket(bucket)
        publish += [f"$JS.API.STREAM.PURGE.{stream.name}" for stream in access.purges]
        publish += [f"$JS.API.STREAM.MSG.DELETE.{st.name}" for st in access.deletes_messages]
        subscribe += [c.wildcard() for c in access.serves]
    return Permissions(
        name,
        tuple(dict.fromkeys(publish)),
        tuple(dict.fromkeys(subscribe)),
        allow_responses=any(a.serves for a in accesses),
    )


TEAM_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def team_user(team: str) -> str:
    if not TEAM_NAME.match(team):
        raise ValueError(f"team name {team!r}: lowercase letters, digits, '-' or '_'")
    return f"{TEAM_ROOT}-{team}"


def team_permissions(team: str) -> Permissions:
    """An internal team: publish only ``team.<team>.>``, read only the public events (and
    its own subjects).

    Live, with core subscriptions; or durably, with one JetStream consumer per stream named
    like the team's user (``team-<team>``) whose filter is one public channel (the filter is in
    the API subject of a named consumer, so NATS checks it). Its dead letters go to
    ``dlq.<tenant>.team-<team>``."""
    user = team_user(team)
    api = "$JS.API.CONSUMER"
    durable: list[str] = [
        f"{api}.CREATE.{c.stream.name}.{user}.{c.wildcard()}"
        for c in PUBLIC_CHANNELS
        if c.stream is not None
    ]
    for stream in dict.fromkeys(c.stream.name for c in PUBLIC_CHANNELS if c.stream is not None):
        durable += [
            f"{api}.INFO.{stream}.{user}",
            f"{api}.DELETE.{stream}.{user}",
            f"{api}.MSG.NEXT.{stream}.{user}",
            f"$JS.ACK.{stream}.{user}.>",
        ]
    return Permissions(
        user,
        publish=(
            f"{TEAM_ROOT}.{team}.>",
            *durable,
            s.DEAD_LETTER.wildcard(origin=user),
        ),
        subscribe=(
            *(c.wildcard() for c in PUBLIC_CHANNELS),
            f"{TEAM_ROOT}.{team}.>",
            f"{inbox_prefix(user)}.>",
        ),
    )


def admin_permissions() -> Permissions:
    """The operator: provisioning, dead-letter review and replay, projection rebuilds."""
    return Permissions(ADMIN, publish=(">",), subscribe=(">",), allow_responses=True)


def all_permissions(teams: tuple[str, ...] = ()) -> list[Permissions]:
    return [
        admin_permissions(),
        *(service_permissions(name) for name in SERVICES),
        *(team_permissions(team) for team in teams),
    ]


def server_authorization(passwords: dict[str, str], teams: tuple[str, ...] = ()) -> str:
    """The ``authorization`` block of a nats-server config: one user per entry of
    :func:`all_permissions`, with its password from ``passwords`` (by user name)."""
    users = [p.to_config(passwords[p.user]) for p in all_permissions(teams)]
    # nats-server's config format accepts JSON values.
    return "authorization {\n  users = " + json.dumps(users, indent=2) + "\n}\n"
