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
