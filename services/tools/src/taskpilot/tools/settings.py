from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from taskpilot.runtime.settings import CommonSettings


class ToolsSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TASKPILOT_TOOLS_", extra="ignore")

    http_port: int = 8004
