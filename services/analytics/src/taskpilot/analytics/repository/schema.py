"""The read models' DDL, and the tables a rebuild clears (and those it keeps).

Read models are disposable: when ``VERSION`` changes, the service drops them, creates them
again and replays the event history (see :mod:`taskpilot.analytics.rebuild`). Operator input
(dead-letter actions, budgets) is not derived from events and is never dropped.
"""

from __future__ import annotations

from taskpilot.tenancy.rls import ensure_app_role_sql, tenant_table_sql

VERSION = "6"

PROJECTION_TABLES = (
    "analytics_projected",
    "analytics_erasures",
    "analytics_conversations",
    "analytics_messages",
    "analytics_bookings",
    "analytics_payments",
    "analytics_dead_letters",
)
"""Derived from events only: cleared and replayed by a rebuild."""

OPERATOR_TABLES = ("analytics_dead_letter_actions", "analytics_budgets")
"""What people decided on the dashboard: kept across rebuilds."""

PROJECTIONS_DDL = """
CREATE TABLE IF NOT EXISTS analytics_projected (
    tenant_id        text NOT NULL,
    event_id         uuid NOT NULL,
    conversation_id  text,
    type             text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX IF NOT EXISTS analytics_projected_type
    ON analytics_projected (tenant_id, type, occurred_at);
CREATE INDEX IF NOT EXISTS analytics_projected_conversation
    ON analytics_projected (tenant_id, conversation_id);
CREATE TABLE IF NOT EXISTS analytics_erasures (
    tenant_id        text NOT NULL,
    conversation_id  text NOT NULL,
    erased_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id)
);
CREATE TABLE IF NOT EXISTS analytics_conversations (
    tenant_id          text NOT NULL,
    conversation_id    text NOT NULL,
    lead               text NOT NULL,
    lead_name          text,
    status             text NOT NULL DEFAULT 'bot',
    messages_in        integer NOT NULL DEFAULT 0,
    messages_out       integer NOT NULL DEFAULT 0,
    bot_replies        integer NOT NULL DEFAULT 0,
    human_replies      integer NOT NULL DEFAULT 0,
    cost_usd           double precision NOT NULL DEFAULT 0,
    first_message_at   timestamptz,
    last_message_at    timestamptz,
    last_in_at         timestamptz,
    waiting_since      timestamptz,
    first_response_ms  double precision,
    handoffs           integer NOT NULL DEFAULT 0,
    takeovers          integer NOT NULL DEFAULT 0,
    handoff_reason     text,
    window_closed      boolean NOT NULL DEFAULT false,
    last_text          text,
    last_direction     text,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id)
);
CREATE INDEX IF NOT EXISTS analytics_conversations_recent
    ON analytics_conversations (tenant_id, updated_at DESC, conversation_id DESC);
CREATE INDEX IF NOT EXISTS analytics_conversations_started
    ON analytics_conversations (tenant_id, first_message_at);
CREATE TABLE IF NOT EXISTS analytics_messages (
    tenant_id          text NOT NULL,
    event_id           uuid NOT NULL,
    conversation_id    text NOT NULL,
    sequence           integer NOT NULL,
    direction          text NOT NULL,
    turn_id            text,
    kind               text,
    text               text,
    tier               text,
    source             text,
    intent             text,
    model              text,
    agent              text,
    prompt_tokens      integer NOT NULL DEFAULT 0,
    completion_tokens  integer NOT NULL DEFAULT 0,
    cost_usd           double precision NOT NULL DEFAULT 0,
    cache_hit          boolean NOT NULL DEFAULT false,
    citations          jsonb NOT NULL DEFAULT '[]'::jsonb,
    latency_ms         double precision,
    status             text NOT NULL,
    failure            text,
    wamid              text,
    awaited_since      timestamptz,
    sent_at            timestamptz,
    reply_ms           double precision,
    occurred_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX IF NOT EXISTS analytics_messages_conversation
    ON analytics_messages (tenant_id, conversation_id, sequence);
CREATE INDEX IF NOT EXISTS analytics_messages_time
    ON analytics_messages (tenant_id, occurred_at);
CREATE TABLE IF NOT EXISTS analytics_bookings (
    tenant_id        text NOT NULL,
    booking_id       text NOT NULL,
    conversation_id  text,
    starts_at        timestamptz,
    ends_at          timestamptz,
    timezone         text,
    calendar         text,
    booked_at        timestamptz,
    cancelled_at     timestamptz,
    replaced_by      text,
    PRIMARY KEY (tenant_id, booking_id)
);
CREATE INDEX IF NOT EXISTS analytics_bookings_time ON analytics_bookings (tenant_id, booked_at);
CREATE TABLE IF NOT EXISTS analytics_payments (
    tenant_id            text NOT NULL,
    checkout_session_id  text NOT NULL,
    provider_event_id    text NOT NULL,
    conversation_id      text,
    provider             text NOT NULL,
    amount_minor         bigint,
    currency             text,
    received_at          timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, checkout_session_id)
);
CREATE INDEX IF NOT EXISTS analytics_payments_time ON analytics_payments (tenant_id, received_at);
CREATE TABLE IF NOT EXISTS analytics_dead_letters (
    tenant_id         text NOT NULL,
    event_id          uuid NOT NULL,
    origin            text NOT NULL,
    reason            text NOT NULL,
    error             text NOT NULL,
    subject           text,
    stream            text,
    stream_seq        bigint,
    attempts          integer NOT NULL,
    headers           jsonb NOT NULL DEFAULT '{}'::jsonb,
    payload           text NOT NULL,
    payload_encoding  text NOT NULL DEFAULT 'utf-8',
    correlation_id    text,
    trace_id          text,
    occurred_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX IF NOT EXISTS analytics_dead_letters_recent
    ON analytics_dead_letters (tenant_id, occurred_at DESC, event_id DESC);
"""

OPERATOR_DDL = """
CREATE TABLE IF NOT EXISTS analytics_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS analytics_dead_letter_actions (
    tenant_id       text NOT NULL,
    dead_letter_id  uuid NOT NULL,
    action          text NOT NULL,
    actor           text NOT NULL,
    msg_id          text,
    at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, dead_letter_id, at)
);
CREATE TABLE IF NOT EXISTS analytics_budgets (
    tenant_id    text PRIMARY KEY,
    monthly_usd  double precision,
    near_share   double precision NOT NULL DEFAULT 0.8,
    updated_by   text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
"""


def ddl() -> str:
    """Idempotent DDL of every table, each tenant table under row-level security."""
    return (
        ensure_app_role_sql()
        + OPERATOR_DDL
        + PROJECTIONS_DDL
        + "".join(tenant_table_sql(t) for t in (*PROJECTION_TABLES, *OPERATOR_TABLES))
    )


def drop_projections_sql() -> str:
    return "".join(f"DROP TABLE IF EXISTS {t};\n" for t in PROJECTION_TABLES)
