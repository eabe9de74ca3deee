"""The Conversation aggregate: one per (tenant, lead). Pure decisions, no I/O.

Every fact is an event. Each event carries ``env`` (tenant, lead, correlation and causation
ids) so the relay can turn it into a public contract message without loading the aggregate.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

NAMESPACE = uuid.UUID("6f1c1b52-63a4-4a8e-9a41-5b3c2b1d7a10")
HISTORY_TURNS = 10
ANSWERABLE_KINDS = {"text", "button_reply", "list_reply", "button"}
SILENT_KINDS = {"reaction"}
"""Recorded, never answered: a 👍 on our message needs no reply (and must not hand off)."""


def conversation_id(tenant_id: str, lead: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{tenant_id}/{lead}")


class Conversation(Aggregate):
    """A lead's conversation with a business, and the turns the assistant takes in it."""

    @event("Started")
    def __init__(self, tenant_id: str, lead: str, phone_number_id: str) -> None:
        self.tenant_id = tenant_id
        self.lead = lead
        self.phone_number_id = phone_number_id
        self.mode = "bot"
        self.seen_wamids: dict[str, None] = {}  # a dict, not a set: snapshots transcode it
        self.history: list[dict[str, str]] = []
        self.open_turns: dict[str, str] = {}  # turn_id -> correlation id (the inbound wamid)
        self.replies: dict[str, str] = {}  # turn_id -> text sent or to be sent
        self.outcomes: dict[str, str] = {}  # turn_id -> "sent" | "failed"

    @classmethod
    def create_id(cls, tenant_id: str, lead: str, phone_number_id: str) -> uuid.UUID:
        return conversation_id(tenant_id, lead)

    def _env(self, correlation_id: str, causation_id: str | None) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "lead": self.lead,
            "phone_number_id": self.phone_number_id,
            "correlation_id": correlation_id,
            "causation_id": causation_id,
        }

    # -- decisions ---------------------------------------------------------------------

    def receive(
        self, wamid: str, kind: str, text: str | None, lead_name: str | None, causation_id: str
    ) -> bool:
        """Record an inbound message; ask for a reply when the bot holds the conversation.

        Returns False for a wamid seen before (Meta redelivers for days): nothing happens.
        """
        if wamid in self.seen_wamids:
            return False
        env = self._env(wamid, causation_id)
        earlier = self.history[-HISTORY_TURNS:]  # the request's text is not repeated in it
        self._message_received(env, wamid, kind, text, lead_name)
        if self.mode == "bot" and kind not in SILENT_KINDS:
            prompt = text if text else f"[{kind}]"
            self._reply_requested(env, wamid, prompt, earlier)
        return True

    def compose(self, turn_id: str, reply: dict[str, Any], causation_id: str) -> bool:
        """Record inference's answer to an open turn; hand off when inference says so."""
        correlation = self.open_turns.get(turn_id)
        if correlation is None:
            return False  # answered already (redelivery) or never asked
        env = self._env(correlation, causation_id)
        self._reply_composed(env, turn_id, reply)
        if reply.get("handoff") and self.mode == "bot":
            self._handed_off(env, str(reply.get("handoff_reason") or "assistant could not answer"))
        return True

    def sent(self, turn_id: str, wamid: str, causation_id: str, correlation_id: str) -> bool:
        if turn_id not in self.replies or turn_id in self.outcomes:
            return False
        self._reply_sent(self._env(correlation_id, causation_id), turn_id, wamid)
        return True

    def failed(
        self, turn_id: str, reason: str, code: int | None, causation_id: str, correlation_id: str
    ) -> bool:
        if turn_id not in self.replies or turn_id in self.outcomes:
            return False
        env = self._env(correlation_id, causation_id)
        self._reply_failed(env, turn_id, reason, code)
        if self.mode == "bot":
            self._handed_off(env, f"reply could not be sent: {reason}")
        return True

    # -- events ------------------------------------------------------------------------

    @event("MessageReceived")
    def _message_received(
        self, env: dict[str, Any], wamid: str, kind: str, text: str | None, lead_name: str | None
    ) -> None:
        self.seen_wamids[wamid] = None
        self.history.append({"role": "lead", "text": text or f"[{kind}]"})

    @event("ReplyRequested")
    def _reply_requested(
        self, env: dict[str, Any], turn_id: str, text: str, history: list[dict[str, str]]
    ) -> None:
        self.open_turns[turn_id] = env["correlation_id"]

    @event("ReplyComposed")
    def _reply_composed(self, env: dict[str, Any], turn_id: str, reply: dict[str, Any]) -> None:
        self.open_turns.pop(turn_id, None)
        if reply.get("text"):
            self.replies[turn_id] = reply["text"]
            self.history.append({"role": "assistant", "text": reply["text"]})

    @event("ReplySent")
    def _reply_sent(self, env: dict[str, Any], turn_id: str, wamid: str) -> None:
        self.outcomes[turn_id] = "sent"

    @event("ReplyFailed")
    def _reply_failed(
        self, env: dict[str, Any], turn_id: str, reason: str, code: int | None
    ) -> None:
        self.outcomes[turn_id] = "failed"

    @event("HandedOff")
    def _handed_off(self, env: dict[str, Any], reason: str) -> None:
        self.mode = "human"
