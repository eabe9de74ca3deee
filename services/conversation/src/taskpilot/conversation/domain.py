"""The Conversation aggregate: one per (tenant, lead). Pure decisions, no I/O.

Every fact is an event. Each event carries ``env`` (tenant, lead, number, correlation and
causation ids) so the relay can turn it into public messages without loading the aggregate.

A *turn* is one answer the assistant owes: it opens with ``ReplyRequested`` (the lead's pending
messages joined), may go through tool-call rounds, and closes with ``ReplyComposed`` (or is
superseded when the lead writes again before it closed, so a burst is answered once). A turn
is *finished* when its reply reached the lead (``ReplySent``): ``TurnFinished`` then carries the
lead's messages and the reply, for the lead's long-term memory.

Outside WhatsApp's 24-hour window a free-form reply cannot be sent: the composed text is kept
but withheld, and the lead gets the tenant's approved template instead, or a person takes over.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.domain import Aggregate, event

NAMESPACE = uuid.UUID("6f1c1b52-63a4-4a8e-9a41-5b3c2b1d7a10")
HISTORY_TURNS = 10
MAX_TOOL_ROUNDS = 3
SERVICE_WINDOW = timedelta(hours=24)
SILENT_KINDS = {"reaction"}
"""Recorded, never answered: a 👍 on our message needs no reply (and must not hand off)."""
STATUS_ORDER = {"sent": 1, "delivered": 2, "read": 3, "played": 3}


class WindowClosedError(Exception):
    """A free-form message outside WhatsApp's 24-hour customer service window."""


class NotHeldByHumanError(Exception):
    """A human tried to reply to, or release, a conversation the bot holds."""


TOOL_KEY_SEPARATOR = "#"  # never in a wamid (base64) nor in a model's call id


def tool_call_key(turn_id: str, round: int, call_id: str) -> str:
    """The id a tool call travels under: it leads back to its turn and round."""
    return TOOL_KEY_SEPARATOR.join((turn_id, str(round), call_id))


def conversation_id(tenant_id: str, lead: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{tenant_id}/{lead}")


class Conversation(Aggregate):
    """A lead's conversation with a business, and the turns the assistant takes in it."""

    class_version = 2
    """2: ``unfinished`` (replies on their way to the lead); snapshots of 1 lack it."""

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state.setdefault("payments", {})
        state.setdefault("unfinished", {})

    @event("Started")
    def __init__(self, tenant_id: str, lead: str, phone_number_id: str) -> None:
        self.tenant_id = tenant_id
        self.lead = lead
        self.phone_number_id = phone_number_id
        self.mode = "bot"
        self.seen_wamids: dict[str, None] = {}  # a dict, not a set: snapshots transcode it
        self.history: list[dict[str, str]] = []
        self.pending: list[dict[str, Any]] = []  # messages waiting for a turn (a burst)
        self.last_inbound_at: str | None = None
        self.open_turns: dict[str, dict[str, Any]] = {}  # turn_id -> correlation, round, calls
        self.replies: dict[str, str] = {}  # turn_id -> text sent or to be sent
        self.outcomes: dict[str, str] = {}  # turn_id -> sent | delivered | read | failed
        self.outbound: dict[str, str] = {}  # wamid Meta gave our message -> turn_id
        self.payments: dict[str, int | None] = {}  # provider payment id -> amount (minor)
        # turn_id -> {"lead": what the lead wrote, "reply": what they get, "by": who answers}
        self.unfinished: dict[str, dict[str, str]] = {}

    @classmethod
    def create_id(cls, tenant_id: str, lead: str, phone_number_id: str) -> uuid.UUID:
        return conversation_id(tenant_id, lead)

    @staticmethod
    def trace_context() -> dict[str, str]:
        """The caller's trace context (W3C headers) to store with each event; the composition
        root plugs OpenTelemetry in, so the relay's publishes continue the same trace."""
        return {}

    def _env(self, correlation_id: str, causation_id: str | None) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "lead": self.lead,
            "phone_number_id": self.phone_number_id,
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            "trace": self.trace_context(),
        }

    def window_open(self, now: datetime) -> bool:
        if self.last_inbound_at is None:
            return False
        return now - datetime.fromisoformat(self.last_inbound_at) < SERVICE_WINDOW

    # -- inbound -----------------------------------------------------------------------

    def receive(
        self,
        wamid: str,
        kind: str,
        text: str | None,
        lead_name: str | None,
        causation_id: str,
        *,
        at: datetime | None = None,
        debounce: bool = False,
    ) -> bool:
        """Record an inbound message; when the bot holds the conversation, answer it now or,
        with ``debounce``, once the lead's burst is over (:meth:`flush`).

        Returns False for a wamid seen before (Meta redelivers for days): nothing happens.
        """
        if wamid in self.seen_wamids:
            return False
        env = self._env(wamid, causation_id)
        answer = self.mode == "bot" and kind not in SILENT_KINDS
        self._message_received(
            env, wamid, kind, text, lead_name, at.isoformat() if at else None, answer
        )
        if answer and not debounce:
            self._open_turn(env)
        return True

    def flush(self, causation_id: str) -> bool:
        """The burst window closed: answer every pending message in one turn."""
        if not self.pending or self.mode != "bot":
            return False
        self._open_turn(self._env(self.pending[-1]["wamid"], causation_id))
        return True

    def _open_turn(self, env: dict[str, Any]) -> None:
        for turn_id in list(self.open_turns):
            self._turn_superseded(env, turn_id)
        unanswered = {line for m in self.pending for line in m["lines"]}
        answered = [h for i, h in enumerate(self.history) if i not in unanswered]
        earlier = answered[-HISTORY_TURNS:]
        text = "\n".join(m["text"] for m in self.pending)
        self._reply_requested(env, self.pending[-1]["wamid"], text, earlier, 0, [])

    # -- the assistant's answer --------------------------------------------------------

    def compose(
        self,
        turn_id: str,
        reply: dict[str, Any],
        causation_id: str,
        holding_text: str = "",
        *,
        now: datetime | None = None,
        template: dict[str, Any] | None = None,
    ) -> bool:
        """Record inference's answer to an open turn: tool calls to run, or the reply.

        ``holding_text`` is what the lead gets if the turn must end in a handoff with nothing
        else to say (tool rounds exhausted): never silence. ``now`` and ``template``: see
        :meth:`_answer` (the 24-hour window).
        """
        turn = self.open_turns.get(turn_id)
        if turn is None or reply.get("round", 0) != turn["round"]:
            return False  # answered already, superseded, or a stale round
        env = self._env(turn["correlation"], causation_id)
        calls = reply.get("tool_calls") or []
        if calls and turn["round"] + 1 < MAX_TOOL_ROUNDS:
            keyed = [{**c, "key": tool_call_key(turn_id, turn["round"], c["id"])} for c in calls]
            self._tool_calls_requested(env, turn_id, turn["round"], keyed)
            return True
        if calls:
            reply = {
                **reply,
                "tool_calls": [],
                "handoff": True,
                "handoff_reason": f"still calling tools after {MAX_TOOL_ROUNDS} rounds",
            }
        if calls and not reply.get("text"):
            reply = {**reply, "text": holding_text, "source": "handoff"}
        reply = {k: v for k, v in reply.items() if k != "tool_calls"}
        self._answer(env, turn_id, reply, now, template)
        if reply.get("handoff"):
            reason = str(reply.get("handoff_reason") or "the assistant could not answer")
            self._hand_off(env, reason, "assistant")
        return True

    def _answer(
        self,
        env: dict[str, Any],
        turn_id: str,
        reply: dict[str, Any],
        now: datetime | None,
        template: dict[str, Any] | None,
        *,
        hand_off_when_closed: bool = True,
    ) -> None:
        """Record the reply of a turn. After the 24-hour window (as of ``now``; None: not
        checked) its text is withheld: the tenant's ``template`` goes instead, or, without
        one, a person takes over (``hand_off_when_closed``) — never a send Meta refuses."""
        if not reply.get("text") or now is None or self.window_open(now):
            self._reply_composed(env, turn_id, reply)
            return
        self._reply_composed(env, turn_id, {**reply, "withheld": "window_closed"})
        self._window_closed(env, turn_id)
        if template is not None:
            self._template_sent(env, turn_id, template)
        elif hand_off_when_closed:
            self._hand_off(env, "the 24-hour window closed before the reply", "system")

    def tool_completed(
        self,
        key: str,
        result: dict[str, Any] | None,
        error: dict[str, Any] | None,
        causation_id: str,
    ) -> bool:
        """A tool call's outcome; when the round's last one is in, ask inference again."""
        turn_id = key.split(TOOL_KEY_SEPARATOR, 1)[0]
        turn = self.open_turns.get(turn_id)
        if turn is None or key not in turn["calls"] or turn["calls"][key]["outcome"] is not None:
            return False
        env = self._env(turn["correlation"], causation_id)
        self._tool_call_completed(env, turn_id, key, result, error)
        calls = turn["calls"].values()
        if all(call["outcome"] is not None for call in calls):
            results = [{"call_id": call["model_id"], **call["outcome"]} for call in calls]
            self._reply_requested(
                env, turn_id, turn["text"], turn["history"], turn["round"] + 1, results
            )
        return True

    def deadline_passed(
        self,
        turn_id: str,
        holding_text: str,
        causation_id: str,
        *,
        now: datetime | None = None,
        template: dict[str, Any] | None = None,
    ) -> bool:
        """Inference or a tool did not answer in time: a holding reply, and a human."""
        turn = self.open_turns.get(turn_id)
        if turn is None:
            return False
        env = self._env(turn["correlation"], causation_id)
        self._turn_timed_out(env, turn_id, turn["round"])
        self._answer(
            env,
            turn_id,
            {
                "text": holding_text,
                "tier": "fallback",
                "source": "handoff",
                "model": "none",
                "latency_ms": 0.0,
            },
            now,
            template,
        )
        self._hand_off(env, "no answer within the deadline", "system")
        return True

    # -- delivery ----------------------------------------------------------------------

    def sent(self, turn_id: str, wamid: str, causation_id: str, correlation_id: str) -> bool:
        if turn_id not in self.replies or turn_id in self.outcomes:
            return False
        env = self._env(correlation_id, causation_id)
        self._reply_sent(env, turn_id, wamid)
        finished = self.unfinished.get(turn_id)
        if finished is not None:
            self._turn_finished(env, turn_id, finished["lead"], finished["reply"], finished["by"])
        return True

    def failed(
        self, turn_id: str, reason: str, code: int | None, causation_id: str, correlation_id: str
    ) -> bool:
        if turn_id not in self.replies or self.outcomes.get(turn_id) not in (None, "sent"):
            return False  # failed already, or delivered (a later failure report is stale)
        env = self._env(correlation_id, causation_id)
        self._reply_failed(env, turn_id, reason, code)
        if code == 131047:  # Meta: more than 24 hours since the lead last wrote
            self._window_closed(env, turn_id)
        self._hand_off(env, f"reply could not be sent: {reason}", "system")
        return True

    def delivery_status(
        self,
        wamid: str,
        status: str,
        causation_id: str,
        error_code: int | None = None,
        error_title: str = "",
    ) -> bool:
        """Meta's status for one of our messages: delivered/read/played move forward only;
        failed (how Meta reports most send failures, 131047 included) is a failed reply."""
        turn_id = self.outbound.get(wamid)
        if turn_id is None or self.outcomes.get(turn_id) == "failed":
            return False
        correlation = self.open_turns.get(turn_id, {}).get("correlation", turn_id)
        if status == "failed":
            reason = error_title or "Meta reported the message as failed"
            return self.failed(turn_id, reason, error_code, causation_id, correlation)
        if status not in ("delivered", "read", "played"):
            return False
        if STATUS_ORDER[status] <= STATUS_ORDER.get(self.outcomes.get(turn_id, ""), 0):
            return False
        self._reply_status_changed(self._env(correlation, causation_id), turn_id, wamid, status)
        return True

    def payment_received(
        self,
        payment_id: str,
        amount_minor: int | None,
        currency: str | None,
        text: str,
        now: datetime,
        causation_id: str,
        template: dict[str, Any] | None = None,
    ) -> bool:
        """The provider confirmed a payment: recorded once; the lead is thanked in free form
        inside the 24-hour window, with the tenant's ``template`` after it (no person needed
        for a thank-you: without a template, nothing is sent)."""
        if payment_id in self.payments:
            return False
        env = self._env(f"payment:{payment_id}", causation_id)
        self._payment_confirmed(env, payment_id, amount_minor, currency)
        if self.window_open(now) or template is not None:
            self._answer(
                env,
                f"payment-{payment_id}",
                {
                    "text": text,
                    "tier": "L0",
                    "source": "template",
                    "intent": "payment",
                    "model": "none",
                    "latency_ms": 0.0,
                },
                now,
                template,
                hand_off_when_closed=False,
            )
        return True

    # -- humans ------------------------------------------------------------------------

    def take_over(self, agent: str, causation_id: str) -> bool:
        if self.mode == "human":
            return False
        self._hand_off(
            self._env(f"takeover:{agent}", causation_id), f"taken over by {agent}", agent
        )
        return True

    def _hand_off(self, env: dict[str, Any], reason: str, by: str) -> None:
        """A person takes over: no open turn may answer after this (the bot stays silent)."""
        if self.mode != "bot":
            return
        for turn_id in list(self.open_turns):
            self._turn_superseded(env, turn_id)
        self._handed_off(env, reason, by)

    def human_reply(self, agent: str, text: str, now: datetime, causation_id: str) -> str:
        """A person replies through the same send path. Returns the reply's turn id."""
        if self.mode != "human":
            raise NotHeldByHumanError("take the conversation over before replying")
        if not self.window_open(now):
            raise WindowClosedError("the lead last wrote more than 24 hours ago")
        turn_id = f"human-{self.version + 1}"
        self._human_replied(self._env(turn_id, causation_id), turn_id, text, agent)
        return turn_id

    def release(self, agent: str, causation_id: str) -> bool:
        if self.mode != "human":
            return False
        self._bot_resumed(self._env(f"release:{agent}", causation_id), agent)
        return True

    # -- events ------------------------------------------------------------------------

    @event("MessageReceived")
    def _message_received(
        self,
        env: dict[str, Any],
        wamid: str,
        kind: str,
        text: str | None,
        lead_name: str | None,
        at: str | None,
        awaits_reply: bool,
    ) -> None:
        self.seen_wamids[wamid] = None
        line = text or f"[{kind}]"
        self.history.append({"role": "lead", "text": line})
        if at and (self.last_inbound_at is None or at > self.last_inbound_at):
            self.last_inbound_at = at  # a late redelivery of an older message never shrinks it
        if awaits_reply:
            self.pending.append({"wamid": wamid, "text": line, "lines": [len(self.history) - 1]})

    @event("ReplyRequested")
    def _reply_requested(
        self,
        env: dict[str, Any],
        turn_id: str,
        text: str,
        history: list[dict[str, str]],
        round: int,
        tool_results: list[dict[str, Any]],
    ) -> None:
        if round == 0:  # a new turn takes every pending message; later rounds keep it
            lines = [line for m in self.pending for line in m["lines"]]
            self.pending = []
        else:
            lines = self.open_turns[turn_id]["lines"]
        self.open_turns[turn_id] = {
            "correlation": env["correlation_id"],
            "round": round,
            "text": text,
            "history": history,
            "calls": {},
            "lines": lines,  # positions in the history of the messages this turn answers
        }

    @event("TurnSuperseded")
    def _turn_superseded(self, env: dict[str, Any], turn_id: str) -> None:
        turn = self.open_turns.pop(turn_id)
        if self.mode == "bot":  # its messages are answered by the next turn
            self.pending[:0] = [{"wamid": turn_id, "text": turn["text"], "lines": turn["lines"]}]

    @event("ToolCallsRequested")
    def _tool_calls_requested(
        self, env: dict[str, Any], turn_id: str, round: int, calls: list[dict[str, Any]]
    ) -> None:
        self.open_turns[turn_id]["calls"] = {
            c["key"]: {"model_id": c["id"], "outcome": None} for c in calls
        }

    @event("ToolCallCompleted")
    def _tool_call_completed(
        self,
        env: dict[str, Any],
        turn_id: str,
        key: str,
        result: dict[str, Any] | None,
        error: dict[str, Any] | None,
    ) -> None:
        self.open_turns[turn_id]["calls"][key]["outcome"] = {"result": result, "error": error}

    @event("TurnTimedOut")
    def _turn_timed_out(self, env: dict[str, Any], turn_id: str, round: int) -> None:
        pass

    @event("ReplyComposed")
    def _reply_composed(self, env: dict[str, Any], turn_id: str, reply: dict[str, Any]) -> None:
        turn = self.open_turns.pop(turn_id, None)
        if reply.get("withheld"):  # the lead never sees it: not a reply, not history
            return
        if reply.get("text"):
            self.replies[turn_id] = reply["text"]
            self.history.append({"role": "assistant", "text": reply["text"]})
            if turn is not None:  # a turn that answers the lead (not a payment's thanks)
                self.unfinished[turn_id] = {
                    "lead": turn["text"],
                    "reply": reply["text"],
                    "by": "assistant",
                }

    @event("TemplateSent")
    def _template_sent(self, env: dict[str, Any], turn_id: str, template: dict[str, Any]) -> None:
        placeholder = f"[template {template.get('name', '')}]"
        self.replies[turn_id] = placeholder
        lead_text = self._unanswered_lines()
        if lead_text:
            self.unfinished[turn_id] = {"lead": lead_text, "reply": "", "by": "assistant"}
        self.history.append({"role": "assistant", "text": placeholder})

    @event("TurnFinished")
    def _turn_finished(
        self, env: dict[str, Any], turn_id: str, lead_text: str, reply_text: str, by: str
    ) -> None:
        self.unfinished.pop(turn_id, None)

    @event("ReplySent")
    def _reply_sent(self, env: dict[str, Any], turn_id: str, wamid: str) -> None:
        self.outcomes[turn_id] = "sent"
        self.outbound[wamid] = turn_id

    @event("ReplyStatusChanged")
    def _reply_status_changed(
        self, env: dict[str, Any], turn_id: str, wamid: str, status: str
    ) -> None:
        self.outcomes[turn_id] = status

    @event("ReplyFailed")
    def _reply_failed(
        self, env: dict[str, Any], turn_id: str, reason: str, code: int | None
    ) -> None:
        self.outcomes[turn_id] = "failed"
        self.unfinished.pop(turn_id, None)  # the lead never got it: nothing to remember

    @event("WindowClosed")
    def _window_closed(self, env: dict[str, Any], turn_id: str) -> None:
        self.last_inbound_at = None

    @event("HandedOff")
    def _handed_off(self, env: dict[str, Any], reason: str, by: str) -> None:
        self.mode = "human"
        self.pending = []

    @event("PaymentConfirmed")
    def _payment_confirmed(
        self, env: dict[str, Any], payment_id: str, amount_minor: int | None, currency: str | None
    ) -> None:
        self.payments[payment_id] = amount_minor

    @event("HumanReplied")
    def _human_replied(self, env: dict[str, Any], turn_id: str, text: str, agent: str) -> None:
        self.replies[turn_id] = text
        self.unfinished[turn_id] = {"lead": self._unanswered_lines(), "reply": text, "by": agent}
        self.history.append({"role": "human", "text": text})

    def _unanswered_lines(self) -> str:
        """What the lead wrote since the last answer they got (bot, human or template)."""
        lines: list[str] = []
        for entry in reversed(self.history):
            if entry["role"] != "lead":
                break
            lines.append(entry["text"])
        return "\n".join(reversed(lines))

    @event("BotResumed")
    def _bot_resumed(self, env: dict[str, Any], agent: str) -> None:
        self.mode = "bot"
