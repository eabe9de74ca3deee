"""Lifecycle benchmark: archive and restore throughput, and hot storage before and after.

    .venv/bin/python bench/lifecycle.py [--conversations 2000]

Seeds N finished conversations (message, reply, delivery: 5 events each) in a scratch
database, archives them all to a local directory, restores a tenth, and measures
conversations/s for each, and ``pg_total_relation_size`` of the events table before, after
the archive (plain DELETE: the pages stay until VACUUM FULL), and after ``VACUUM FULL``.
Figures go to stdout and bench/results/lifecycle.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from pydantic import SecretStr

from taskpilot.conversation.adapters import TIMERS_SCHEMA, open_event_store
from taskpilot.conversation.domain import Conversation, conversation_id
from taskpilot.conversation.lifecycle import open_lifecycle
from taskpilot.conversation.settings import ConversationSettings
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.servers import (
    MACHINE_POSTGRES,
    create_database,
    drop_database,
    scratch_database_name,
)
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.tenancy import BusinessProfile, SecretBox, Tenant, TenantDirectory, TenantSecrets

RESULTS = Path(__file__).resolve().parent / "results" / "lifecycle.json"
TENANT = "bench"


def size(url: str, vacuum: bool = False) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        if vacuum:
            conn.execute("VACUUM FULL conversations_events")
        row = conn.execute("SELECT pg_total_relation_size('conversations_events')").fetchone()
    return int(row[0]) if row else 0


def stored_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*.gz"))


async def main(n: int) -> dict[str, float]:
    name = scratch_database_name()
    url = create_database(MACHINE_POSTGRES, name)
    app = await asyncio.to_thread(open_event_store, url)
    pool = await open_pool(url, max_size=8)
    try:
        tenants = TenantDirectory(pool, SecretBox.from_setting(DEV_SECRET_KEYS))
        await tenants.ensure_schema()
        await tenants.upsert(
            Tenant(
                id=TENANT,
                name=TENANT,
                profile=BusinessProfile(name=TENANT),
                secrets=TenantSecrets(
                    app_secret=SecretStr("a"),
                    access_token=SecretStr("b"),
                    verify_token=SecretStr("c"),
                ),
            )
        )
        leads = [f"34{i:010d}" for i in range(n)]
        for start in range(0, n, 200):
            batch = []
            for lead in leads[start : start + 200]:
                c = Conversation(TENANT, lead, "1")
                c.receive(f"w.{lead}", "text", "How much is a cut? " * 5, "Ann", "x")
                c.compose(f"w.{lead}", {"text": "20 €", "tier": "L1", "source": "faq"}, "y")
                c.sent(f"w.{lead}", f"o.{lead}", "z", f"w.{lead}")
                batch.append(c)
            app.save(*batch)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TIMERS_SCHEMA)
            conn.execute(
                "INSERT INTO relay_positions SELECT 'conversation', max(notification_id) "
                "FROM conversations_events"
            )
        archive_dir = Path(tempfile.mkdtemp(prefix="tp-archive-"))
        settings = ConversationSettings(database_url=url, archive_url=str(archive_dir))
        lifecycle = await open_lifecycle(app, pool, tenants, None, settings, batch=200)
        before = size(url)
        started = time.perf_counter()
        report = await lifecycle.archive(TENANT, datetime.now(UTC) + timedelta(days=100))
        archive_s = time.perf_counter() - started
        assert report.archived == n, report
        after_delete = size(url)
        after_vacuum = size(url, vacuum=True)
        sample = leads[: max(1, n // 10)]
        started = time.perf_counter()
        for lead in sample:
            await lifecycle.restore(TENANT, conversation_id(TENANT, lead), "bench")
        restore_s = time.perf_counter() - started
        archive_bytes = await asyncio.to_thread(stored_bytes, archive_dir)
        return {
            "conversations": n,
            "events": n * 5,
            "archive_conversations_per_s": round(n / archive_s, 1),
            "restore_conversations_per_s": round(len(sample) / restore_s, 1),
            "restored": len(sample),
            "hot_bytes_before": before,
            "hot_bytes_after_archive": after_delete,
            "hot_bytes_after_vacuum_full": after_vacuum,
            "archive_bytes_remaining": archive_bytes,
        }
    finally:
        app.close()
        await pool.close()
        drop_database(MACHINE_POSTGRES, name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=2000)
    figures = asyncio.run(main(parser.parse_args().conversations))
    figures["measured_at"] = datetime.now(UTC).isoformat()  # type: ignore[assignment]
    figures["run"] = uuid.uuid4().hex[:8]  # type: ignore[assignment]
    print(json.dumps(figures, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
