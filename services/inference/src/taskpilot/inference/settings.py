"""Inference settings (``TASKPILOT_INFERENCE_*``) and the model configuration.

Models are configured as JSON, inline (``TASKPILOT_INFERENCE_MODELS``) or in a file
(``TASKPILOT_INFERENCE_MODELS_FILE``); API keys are never in it, only the names of the
environment variables that hold them. Without any deployment the cascade runs levels 0-1, the
cache and handoff (the embedded default), and LiteLLM is never imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from taskpilot.runtime.settings import CommonSettings, error_lines


class ModelDeployment(BaseModel):
    """One model behind one provider; several with the same group share its traffic."""

    tier: Literal["L2", "L3"] = "L2"
    group: str | None = Field(default=None, description="Router model group (default: tier)")
    model: str = Field(description="LiteLLM model, e.g. openai/gpt-4o-mini, ollama_chat/llama3")
    api_base: str | None = None
    api_key_env: str | None = Field(default=None, description="Env variable holding the key")
    timeout_s: float | None = None
    input_cost_per_token: float | None = Field(
        default=None, description="USD; registered with LiteLLM when its map lacks the model"
    )
    output_cost_per_token: float | None = None
    max_input_tokens: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    weight: int | None = None

    @property
    def group_name(self) -> str:
        return self.group or self.tier

    def deployment_id(self, index: int) -> str:
        return f"{self.group_name}-{index}"


class ModelsConfig(BaseModel):
    deployments: list[ModelDeployment] = []
    fallbacks: dict[str, list[str]] = Field(
        default_factory=lambda: {"L3": ["L2"]},
        description="Group -> groups to try when it fails (premium ones skipped near the cap)",
    )
    context_window_fallbacks: dict[str, list[str]] = {}
    num_retries: int = 1
    timeout_s: float = 8.0
    deadline_s: float = Field(
        default=20.0, description="Whole cascade; inside the conversation's 30 s turn deadline"
    )
    retry_after_s: float = 0.0
    cooldown_s: float = 30.0
    allowed_fails: int = 3
    stream: bool = False
    max_tokens: int = 400

    @model_validator(mode="after")
    def _groups_have_one_tier(self) -> ModelsConfig:
        self.tier_of_groups()
        return self

    def tier_of_groups(self) -> dict[str, str]:
        tiers: dict[str, str] = {}
        for d in self.deployments:
            if tiers.setdefault(d.group_name, d.tier) != d.tier:
                raise ValueError(f"group {d.group_name} mixes tiers")
        return tiers

    @property
    def remote(self) -> bool:
        return bool(self.deployments)


class InferenceSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TASKPILOT_INFERENCE_", extra="ignore")

    http_port: int = 8002
    knowledge_timeout_s: float = 2.0
    faq_similarity: float = Field(
        default=0.91, description="Min cosine between a message and an FAQ question (level 1)"
    )
    intent_thresholds: dict[str, float] | None = Field(
        default=None, description="Override the trained model's per-intent confidences"
    )
    models: ModelsConfig = ModelsConfig()
    models_file: Path | None = None
    cache_similarity: float = Field(
        default=0.93, description="Min cosine between two questions for a cache hit"
    )
    cache_ttl_s: float = 7 * 24 * 3600.0
    cache_bucket: str = "inference_cache"
    spend_bucket: str = "inference_spend"
    monthly_budget_usd: float | None = Field(
        default=None, description="Default monthly model budget per tenant (None: unlimited)"
    )
    tenant_budgets_usd: dict[str, float] = {}
    budget_near_share: float = 0.8
    tenant_requests_per_s: float = 5.0
    tenant_request_burst: float = 20.0
    tenant_tokens_per_s: float = 2000.0
    tenant_token_burst: float = 40000.0
    rate_wait_s: float = Field(
        default=2.0, description="Longest wait for a tenant's token bucket before handing off"
    )
    plan_max_tokens: int = Field(default=1200, description="Longest weekly marketing plan")
    plan_deadline_s: float = Field(
        default=40.0,
        description="Longest wait for the plan's model, retries and fallbacks included (keep it "
        "under the tools service's TASKPILOT_TOOLS_PLAN_TIMEOUT_S)",
    )

    @field_validator("models_file")
    @classmethod
    def _a_models_file_we_can_use(cls, path: Path | None) -> Path | None:
        if path is not None:
            read_models(path)  # at start, with the setting's name, not at the first turn
        return path

    def models_config(self) -> ModelsConfig:
        if self.models_file is not None:
            return read_models(self.models_file)
        return self.models


def read_models(path: Path) -> ModelsConfig:
    """The models file's configuration; a ValueError that says what is wrong and where."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    try:
        return ModelsConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path}: {'; '.join(error_lines(exc, 'the file'))}") from None
