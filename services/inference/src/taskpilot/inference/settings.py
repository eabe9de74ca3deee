from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from taskpilot.runtime.settings import CommonSettings


class InferenceSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TASKPILOT_INFERENCE_", extra="ignore")

    http_port: int = 8002
    knowledge_timeout_s: float = 2.0
    intent_similarity: float = 0.91
    intent_margin: float = 0.025
    faq_similarity: float = 0.90
