"""Analytics use cases: project events, answer the dashboard, handle dead letters.

Onboarding lives in :mod:`taskpilot.analytics.onboarding`, the rebuild in
:mod:`taskpilot.analytics.rebuild`.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from taskpilot.analytics.domain import (
    Projectable,
    figures,
    replay_msg_id,
    replay_subject,
)
from taskpilot.analytics.repository import (
    ConversationFilter,
    OperatorStore,
    ProjectionStore,
    ReadModels,
)
from taskpilot.runtime.batching import Coalescer
from taskpilot.runtime.bus import MSG_ID, Bus
from taskpilot.tenancy import TenantDirectory, UnknownTenantError


class ConversationNotFoundError(LookupError):
    """No conversation with this id in the tenant's read model."""


class DeadLetterNotFoundError(LookupError):
    """No dead letter with this id in the tenant's read model."""


class DeadLetterClosedError(Exception):
    """The dead letter was discarded; it can be neither replayed nor discarded again."""


class Projector:
    """Events that arrive together are applied together: one transaction for the batch (one
    BEGIN, lock and COMMIT instead of one per event); a batch that fails is applied again
    event by event, so a bad event fails only its own delivery."""

    def __init__(self, store: ProjectionStore, max_batch: int = 64):
        self._store = store
        self.batching: Coalescer[Projectable, bool] = Coalescer(
            store.apply_many, max_batch=max_batch, name="analytics-project"
        )

    async def when_event(self, event: Projectable) -> None:
        await self.batching.submit(event)


class Dashboard:
    """The dashboard's reads: conversations, figures, time series. The budget shown against
    the month's spend is the tenant's, from the tenant directory (set in onboarding)."""

    def __init__(
        self, reads: ReadModels, operator: OperatorStore, tenants: TenantDirectory | None = None
    ):
        self._reads = reads
        self._operator = operator
        self._tenants = tenants

    async def conversations(
        self, tenant_id: str, f: ConversationFilter, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of conversations, most recently active first, and the next page's cursor."""
        rows = await self._reads.conversations(tenant_id, f, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        if not more:
            return rows, None
        return rows, encode_cursor(rows[-1]["updated_at"], rows[-1]["conversation_id"])

    async def conversation(self, tenant_id: str, conversation_id: str) -> dict[str, Any]:
        found = await self._reads.conversation(tenant_id, conversation_id)
        if found is None:
            raise ConversationNotFoundError(conversation_id)
        return found

    async def export(self, tenant_id: str, f: ConversationFilter) -> list[dict[str, Any]]:
        return await self._reads.export(tenant_id, f)

    async def summary(self, tenant_id: str, since: datetime, until: datetime) -> dict[str, Any]:
        raw = await self._reads.summary(tenant_id, since, until)
        cohort, replies, bookings = raw["cohort"], raw["replies"], raw["bookings"]
        totals = {
            "conversations": cohort["conversations"],
            "resolved": cohort["resolved"],
            "handed_off": cohort["handed_off"],
            "bot_answers": replies["bot_answers"],
            "bot_replies": replies["bot_replies"],
            "cache_hits": replies["cache_hits"],
            "cost_usd": replies["cost_usd"],
            "bookings": bookings["bookings"],
        }
        month = since_month_start(until)
        budget = await self._budget(tenant_id)
        return {
            "since": since,
            "until": until,
            "statuses": {s: raw["statuses"].get(s, 0) for s in ("bot", "human", "closed")},
            "conversations": cohort["conversations"],
            "resolved": cohort["resolved"],
            "handed_off": cohort["handed_off"],
            "taken_over": cohort["taken_over"],
            "messages_in": replies["messages_in"],
            "bot_replies": replies["bot_replies"],
            "human_replies": replies["human_replies"],
            "failed_replies": replies["failed"],
            "first_response_ms": percentiles(cohort["first_response_ms"]),
            "reply_ms": percentiles(replies["reply_ms"]),
            "bot_reply_ms": percentiles(replies["bot_reply_ms"]),
            "human_reply_ms": percentiles(replies["human_reply_ms"]),
            "cost_usd": replies["cost_usd"],
            "tokens": replies["tokens"],
            "cache_hits": replies["cache_hits"],
            "by_tier": raw["tiers"],
            "bookings": bookings,
            "revenue": raw["revenue"],
            "events": raw["events"],
            "dead_letters": _dead_letter_counts(raw["dead_letters"]),
            "budget": {
                **budget,
                "spent_this_month_usd": await self._reads.month_spend(tenant_id, month),
            },
            **figures(totals),
        }

    async def _budget(self, tenant_id: str) -> dict[str, float | None]:
        if self._tenants is None:
            return {"monthly_usd": None, "near_share": None}
        try:
            profile = (await self._tenants.get(tenant_id)).profile
        except UnknownTenantError:
            return {"monthly_usd": None, "near_share": None}
        return {"monthly_usd": profile.monthly_budget_usd, "near_share": profile.budget_near_share}

    async def timeseries(
        self, tenant_id: str, since: datetime, until: datetime, bucket: str, tz: str
    ) -> dict[str, Any]:
        series = await self._reads.timeseries(tenant_id, since, until, bucket, tz)
        for row in series["messages"]:
            row["reply_ms"] = percentiles(row["reply_ms"])
        for row in series["conversations"]:
            row["first_response_ms"] = percentiles(row["first_response_ms"])
        return {"bucket": bucket, "timezone": tz, **series}


class DeadLetters:
    """List, inspect, replay (publish the original again, with a new Msg-Id), discard."""

    def __init__(self, reads: ReadModels, operator: OperatorStore, bus: Bus):
        self._reads = reads
        self._operator = operator
        self._bus = bus

    async def page(
        self, tenant_id: str, status: str, reason: str | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        after = decode_cursor(cursor) if cursor else None
        rows = await self._reads.dead_letters(tenant_id, status, reason, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1]["occurred_at"], str(rows[-1]["id"])) if more else None
        return rows, next_cursor

    async def get(self, tenant_id: str, letter_id: str) -> dict[str, Any]:
        letter = await self._reads.dead_letter(tenant_id, letter_id)
        if letter is None:
            raise DeadLetterNotFoundError(letter_id)
        return letter

    async def replay(self, tenant_id: str, letter_id: str, actor: str) -> dict[str, Any]:
        letter = await self.get(tenant_id, letter_id)
        if letter["status"] == "discarded":
            raise DeadLetterClosedError("a discarded dead letter cannot be replayed")
        subject = replay_subject(letter["subject"], letter["stream"])
        msg_id = replay_msg_id(letter_id, letter["replays"])
        body = (
            base64.b64decode(letter["payload"])
            if letter["payload_encoding"] == "base64"
            else letter["payload"].encode()
        )
        headers = {**letter["headers"], MSG_ID: msg_id, "Replay-Of": letter_id}
        await self._bus.publish_raw(subject, body, headers, letter["stream"])
        await self._operator.record_action(tenant_id, letter_id, "replayed", actor, msg_id)
        return {"replayed": True, "subject": subject, "msg_id": msg_id}

    async def discard(self, tenant_id: str, letter_id: str, actor: str) -> dict[str, Any]:
        letter = await self.get(tenant_id, letter_id)
        if letter["status"] == "discarded":
            raise DeadLetterClosedError("the dead letter was already discarded")
        await self._operator.record_action(tenant_id, letter_id, "discarded", actor, None)
        return {"discarded": True}


def percentiles(values: list[float | None] | None) -> dict[str, float | None]:
    p50, p95 = values if values else (None, None)
    return {"p50": p50, "p95": p95}


def since_month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def default_period(
    since: datetime | None, until: datetime | None, days: int = 30
) -> tuple[datetime, datetime]:
    until = until or datetime.now(UTC)
    return since or until - timedelta(days=days), until


def _dead_letter_counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_status = {"open": 0, "replayed": 0, "discarded": 0}
    by_reason: dict[str, int] = {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["n"]
        if row["status"] == "open":
            by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + row["n"]
    return {**by_status, "open_by_reason": by_reason}


class BadCursorError(ValueError):
    """A pagination cursor this API did not issue."""


def encode_cursor(at: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{key}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, key = raw.split("|", 1)
        return datetime.fromisoformat(at), key
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursorError("invalid cursor") from exc
