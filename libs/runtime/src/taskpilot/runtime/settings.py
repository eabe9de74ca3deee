"""Settings base: shared connection settings unprefixed, service settings prefixed.

``NATS_URL``, ``DATABASE_URL``, ``QDRANT_URL`` and ``TASKPILOT_SECRET_KEYS`` are read by every
service under the same name; each service's own settings use its prefix, e.g.
``TASKPILOT_INGEST_HTTP_PORT``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_NATS_URL = "nats://127.0.0.1:14222"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/taskpilot"
DEV_SECRET_KEYS = "dev:ZGV2LW9ubHktZGV2LW9ubHktZGV2LW9ubHktZGV2LW8="  # noqa: S105
"""A fixed key for the embedded default only; `make run` warns while it is in use."""


@dataclass(frozen=True)
class NatsCredentials:
    """One NATS user. Its replies come to ``_INBOX.<user>``, the only inbox it may read."""

    user: str
    password: str

    @property
    def inbox_prefix(self) -> str:
        return inbox_prefix(self.user)


def error_lines(exc: ValidationError, whole: str) -> list[str]:
    """One ``where: reason`` line per error of ``exc``; ``whole`` names a whole-model error."""
    return [
        f"{'.'.join(str(part) for part in error['loc']) or whole}: {error['msg']}"
        for error in exc.errors()
    ]


def inbox_prefix(user: str) -> str:
    return f"_INBOX.{user}"


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    nats_url: str = Field(default=DEFAULT_NATS_URL, validation_alias="NATS_URL")
    nats_user: str | None = Field(
        default=None,
        validation_alias="NATS_USER",
        description="This service's NATS user (see docs/operations.md, bus permissions)",
    )
    nats_password: SecretStr | None = Field(default=None, validation_alias="NATS_PASSWORD")
    nats_auth_file: Path | None = Field(
        default=None,
        validation_alias="TASKPILOT_NATS_AUTH_FILE",
        description="JSON {user: password} (written by `taskpilot dev`): each service in the "
        "process connects as the user of its own name; NATS_USER, when set, wins",
    )
    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias="DATABASE_URL")
    secret_keys: str = Field(
        default=DEV_SECRET_KEYS,
        validation_alias="TASKPILOT_SECRET_KEYS",
        description="Key ring 'id:base64key,...', newest first (encrypts secrets at rest)",
    )
    data_dir: Path = Field(default=Path(".taskpilot"), validation_alias="TASKPILOT_DATA_DIR")
    otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    log_level: str = Field(default="INFO", validation_alias="TASKPILOT_LOG_LEVEL")
    log_json: bool = Field(default=True, validation_alias="TASKPILOT_LOG_JSON")
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    publish_retry_s: float = Field(
        default=15.0,
        description="How long a publish keeps retrying; longer than a JetStream leader election",
    )
    stream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        validation_alias="TASKPILOT_STREAM_REPLICAS",
        description="Replicas of every stream and runtime KV bucket (3 on a 3-node cluster)",
    )
    fair_consumers: bool = Field(
        default=True,
        validation_alias="TASKPILOT_FAIR_CONSUMERS",
        description="Per-tenant fair scheduling with lookahead (ADR 7); false serves every "
        "consumer in stream order (one in flight per ordered consumer), for comparison",
    )
    drain_timeout_s: float = Field(
        default=20.0,
        validation_alias="TASKPILOT_DRAIN_TIMEOUT_S",
        description="On SIGTERM, how long running handlers may take to finish and ack; keep it "
        "below the orchestrator's grace period (Kubernetes: 30 s)",
    )

    def nats_credentials(self, name: str) -> NatsCredentials | None:
        """Who ``name`` (a service, or a CLI job) connects to NATS as; None for a server
        without users."""
        if self.nats_user:
            password = self.nats_password.get_secret_value() if self.nats_password else ""
            return NatsCredentials(self.nats_user, password)
        if self.nats_auth_file is None:
            return None
        passwords: dict[str, str] = json.loads(self.nats_auth_file.read_text())
        # Not a service (a CLI job such as `taskpilot lifecycle`): the operator's own user.
        user = name if name in passwords else "admin"
        if user not in passwords:
            raise LookupError(f"{self.nats_auth_file} has no NATS user {name!r} nor admin")
        return NatsCredentials(user, passwords[user])
