from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from taskpilot.contracts.subjects import INBOUND_PARTITIONS
from taskpilot.runtime.settings import CommonSettings


class ConversationSettings(CommonSettings):
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
    archive_url: str = ""
    """Where archived conversations go: a directory or ``file://`` URL, ``s3://bucket/prefix``
    (obstore; credentials from ``AWS_*``). Empty: ``<TASKPILOT_DATA_DIR>/archive``."""
    archive_after_days: int = 90
    """Default idle time before a conversation is archived (a tenant's profile may override)."""

    def archive_location(self) -> str:
        return self.archive_url or str((self.data_dir / "archive").resolve())
