from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from taskpilot.runtime.settings import CommonSettings


class KnowledgeSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TASKPILOT_KNOWLEDGE_", extra="ignore")

    http_port: int = 8003
    qdrant_url: str | None = Field(default=None, validation_alias="QDRANT_URL")
    """A Qdrant server; unset means embedded (qdrant-client local mode on disk)."""
    qdrant_path: str | None = None
    """Embedded store directory; default ``<data_dir>/qdrant``; ``:memory:`` for throwaway."""
    collection: str = "knowledge"
