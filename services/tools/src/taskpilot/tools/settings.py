from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from taskpilot.runtime.auth import GuardedSettings


class ToolsSettings(GuardedSettings):
    """Tools settings (``TASKPILOT_TOOLS_*``); the key ring is ``TASKPILOT_SECRET_KEYS``."""

    model_config = SettingsConfigDict(env_prefix="TASKPILOT_TOOLS_", extra="ignore")

    http_port: int = 8004
    google_api_base: str = "https://www.googleapis.com"
    google_token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
    stripe_api_base: str | None = Field(
        default=None, description="Stripe's API address; None is Stripe's own"
    )
    stripe_tolerance_s: int = Field(default=300, description="Max age of a Stripe signature")
    provider_timeout_s: float = 10.0
    allow_private_targets: bool = Field(
        default=False,
        description="Let tenants' CalDAV, workflow and webhook URLs reach loopback and private "
        "addresses (a single-business install); keep False when tenants are strangers",
    )
    execute_attempts: int = Field(default=5, ge=1)
    execute_retry_s: float = Field(default=2.0, description="Delay x attempt after a failure")
    webhook_attempts: int = Field(default=8, ge=2)
    webhook_backoff_s: list[float] = [1.0, 5.0, 30.0, 120.0, 600.0, 1800.0]
    webhook_endpoints_ttl_s: float = Field(
        default=5.0,
        ge=0,
        description="How long a replica keeps a tenant's webhook subscriptions (changes through "
        "its own API apply at once, another replica's within this time)",
    )
    job_attempts: int = Field(default=3, ge=1)
    job_ack_wait_s: float = Field(
        default=60.0, description="How soon a dead worker's job goes to another worker"
    )
    job_step_pause_s: float = Field(
        default=0.0, description="Pause between job steps (demos and restart tests only)"
    )
    plan_timeout_s: float = Field(
        default=45.0,
        description="Longest wait for the inference service's model to write the weekly plan "
        "(then the job finishes with its template draft)",
    )
