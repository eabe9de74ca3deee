"""The event store: eventsourcing's PostgreSQL persistence, configured from DATABASE_URL."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import psycopg

from taskpilot.conversation.service import Conversations


def eventsourcing_env(database_url: str, schema: str = "public") -> dict[str, str]:
    url = urlsplit(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": url.path.lstrip("/") or "postgres",
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(url.password or ""),  # must be set, empty is fine
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": "8",
        "CREATE_TABLE": "y",
    }


def open_event_store(database_url: str, schema: str = "public") -> Conversations:
    """Build the application; replicas starting together serialise its CREATE TABLEs."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('taskpilot.conversation.store'))")
        try:
            return Conversations(env=eventsourcing_env(database_url, schema))
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('taskpilot.conversation.store'))")
