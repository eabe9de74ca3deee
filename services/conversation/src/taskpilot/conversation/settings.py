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
