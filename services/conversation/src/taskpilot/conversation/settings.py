from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from taskpilot.contracts.subjects import INBOUND_PARTITIONS
from taskpilot.runtime.auth import GuardedSettings


class ConversationSettings(GuardedSettings):
    model_config = SettingsConfigDict(env_prefix="TASKPILOT_CONVERSATION_", extra="ignore")

    http_port: int = 8001
    partitions: list[int] = list(range(INBOUND_PARTITIONS))
    """Inbound partitions this process consumes (all by default; each stays in order)."""
    event_store_schema: str = "public"
    burst_window_s: float = 0.0
    """Answer a lead's messages together once they pause this long (0: answer each at once;
    a turn still open when the next message comes is superseded either way)."""
    turn_deadline_s: float = 30.0
    """Without a reply from inference (and tools) by then: holding reply and handoff."""
    relay_max_lag: int = Field(default=200, ge=0)
    """New lead messages wait while more stored events than this await the relay, so a
    flood's backlog stays in JetStream, where consumers serve tenants fairly (0: never wait)."""
    archive_url: str = ""
    """Where archived conversations go: a directory or ``file://`` URL, ``s3://bucket/prefix``
    (obstore; credentials from ``AWS_*``). Empty: ``<TASKPILOT_DATA_DIR>/archive``."""
    archive_after_days: int = 90
    """Default idle time before a conversation is archived (a tenant's profile may override)."""
    lifecycle_schedule: bool = True
    """Run the archive and retention jobs periodically in this service (one replica at a time,
    under a PostgreSQL advisory lock); false leaves them to ``taskpilot lifecycle``."""
    lifecycle_interval_s: float = Field(default=24 * 3600.0, gt=0)
    """How often the lifecycle jobs run (at most once per interval across all replicas)."""

    def archive_location(self) -> str:
        return self.archive_url or str((self.data_dir / "archive").resolve())
